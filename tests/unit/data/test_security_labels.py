"""Issue 12, finding 3: class names that break labels.

A class folder whose name holds a control character (a newline made labels.txt hold 8 lines for 7
classes) or bytes that are not UTF-8 (which passed ``data check`` and then failed in ``write_labels``
after training) is refused when the folder is read, before any training, with one line naming the
folder. Names that are legal but hostile to a terminal (U+202E, rich markup) and file names with ANSI
escapes are escaped wherever edgetl prints them, by one function, :func:`edgetl.core.text.display_safe`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.errors import DataError
from edgetl.core.metadata import labels_text, write_labels
from edgetl.core.text import class_name_problem, display_safe
from tests.helpers import assert_one_line_error

runner = CliRunner()
#: Legal class names that a terminal must not obey: a right-to-left override, rich markup (one closing
#: tag that rich refuses to parse), a right-to-left mark.
HOSTILE_DISPLAY_NAMES = ["red\u202eder", "[/x]blue", "[bold]green", "gr\u200fey"]


def run(*args):
    return runner.invoke(app, [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args], env={"COLUMNS": "250"})


def _image(path: Path | bytes, value: int = 0) -> None:
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(os.fsdecode(path), format="PNG")


def _folder_with(tmp_path: Path, bad_name: str | bytes) -> tuple[Path, str]:
    """A data folder with a good class and one class folder named ``bad_name`` (bytes: a raw, non-UTF-8 file name)."""
    root = tmp_path / "data"
    for name in ("ok", "fine"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            _image(root / name / f"{i}.png", 40 * i)
    raw = os.fsencode(root) + b"/" + (bad_name if isinstance(bad_name, bytes) else bad_name.encode("utf-8"))
    os.mkdir(raw)
    for i in range(4):
        _image(raw + f"/{i}.png".encode(), 30 * i)
    return root, os.fsdecode(raw)


BAD_FOLDERS = {"newline": "cat\ndog", "ansi": "\x1b[31mred", "not-utf8": b"caf\xe9", "carriage-return": "a\rb", "tab": "a\tb"}


# ---------------------------------------------------------------------------------------------- the rule


def test_class_name_rule():
    for good in ("cat", "caf\u00e9", "red\u202eder", "*/ \"quoted\" \\ $x", "\U0001f600", "a b"):
        assert class_name_problem(good) is None, good
    for bad, reason in (("a\nb", "U+000A"), ("\x1b[31m", "U+001B"), ("a\u2028", "U+2028"), ("x\x85", "U+0085"),
                        (os.fsdecode(b"caf\xe9"), "UTF-8"), ("", "empty"), ("  ", "blank"), ("x" * 256, "256"), (3, "int")):
        problem = class_name_problem(bad)
        assert problem is not None and reason in problem, (bad, problem)


def test_display_safe_escapes_what_a_terminal_would_obey():
    assert display_safe("\x1b[31mred") == "\\x1b[31mred"
    assert display_safe("red\u202eder \u200f\u2028") == "red\\u202eder \\u200f\\u2028"
    assert display_safe("a\nb\x00\x7f\x85") == "a\\x0ab\\x00\\x7f\\x85"
    assert display_safe("caf\u00e9 \U0001f600 \u4e2d") == "caf\u00e9 \U0001f600 \u4e2d", "printable non-ASCII is kept"
    assert display_safe("[bold]x[/bold]") == "\\[bold]x\\[/bold]" and display_safe("[bold]x", markup=False) == "[bold]x"
    assert display_safe(os.fsdecode(b"caf\xe9")) == "caf\\udce9"
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(display_safe("[/x] \x1b[2J\u202e"))
    assert out.getvalue() == "[/x] \\x1b[2J\\u202e\n", "rich prints it literally (no MarkupError, no escape sequence)"


def test_labels_txt_has_exactly_one_line_per_class(tmp_path):
    names = ["a", "*/ \"q\" \\", "red\u202eder", "caf\u00e9"]
    assert labels_text(names).splitlines() == names
    write_labels(tmp_path / "labels.txt", names)
    assert (tmp_path / "labels.txt").read_text(encoding="utf-8").splitlines() == names
    for bad in (["a\nb", "c"], ["a", "b\u2029c"], ["a", os.fsdecode(b"caf\xe9")]):
        with pytest.raises(Exception, match="class name"):
            write_labels(tmp_path / "bad.txt", bad)
    assert not (tmp_path / "bad.txt").exists()


# ---------------------------------------------------------------------------------------------- refused at data loading


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_data_check_refuses_the_folder_by_name(case, tmp_path):
    root, bad = _folder_with(tmp_path, BAD_FOLDERS[case])
    result = run("data", "check", root)
    assert_one_line_error(result, "class folder", "rename")
    assert repr(bad)[1:-1] in result.stderr, "the folder is named, escaped (repr)"
    from edgetl.data.folder import scan_folder
    from edgetl.data.split import load_eval_set

    with pytest.raises(DataError, match="rename"):
        scan_folder(root)
    with pytest.raises(DataError, match="rename"):
        load_eval_set(root, 16)


@pytest.mark.parametrize("command", ["train", "build"])
@pytest.mark.parametrize("case", ["newline", "not-utf8"])
def test_train_and_build_refuse_it_before_training(command, case, tmp_path):
    root, bad = _folder_with(tmp_path, BAD_FOLDERS[case])
    out = tmp_path / "out"
    result = run(
        command, "--data", root, "--out", out, "--model", "mobilenet_v2", "--alpha", "0.35", "--input-size", "32",
        "--weights", "none", "--head-epochs", "1", "--fine-tune-epochs", "1", *(["--target", "tflite-fp32"] if command == "build" else []),
    )
    assert_one_line_error(result, "class folder", "rename", repr(bad)[1:-1])
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in written if p.suffix in (".keras", ".h5", ".tflite", ".txt")], f"training ran: {written}"


# ---------------------------------------------------------------------------------------------- escaped for display


def _onnx_with_labels(tmp_path: Path, labels: list[str]) -> Path:
    from tests.helpers import GOOD, _nhwc_onnx_classifier

    model, _ = _nhwc_onnx_classifier(tmp_path / "m.onnx", size=8, metadata={"labels": json.dumps(labels), "preprocessing": json.dumps({**GOOD, "input_size": 8})})
    return model


def _no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\u202e" not in text and "\u200f" not in text, repr(text[-400:])


def test_predict_and_eval_escape_labels(tmp_path):
    model = _onnx_with_labels(tmp_path, HOSTILE_DISPLAY_NAMES)
    data = tmp_path / "eval"
    for i, name in enumerate(n for n in HOSTILE_DISPLAY_NAMES if "/" not in n):  # a folder name cannot hold "/"
        (data / name).mkdir(parents=True)
        _image(data / name / "x.png", 60 * i)
    predicted = run("predict", model, data / HOSTILE_DISPLAY_NAMES[0] / "x.png", "--top-k", "4")
    assert predicted.exit_code == 0, predicted.output + predicted.stderr
    _no_raw_controls(predicted.output)
    assert "red\\u202eder" in predicted.output and "[/x]blue" in predicted.output and "[bold]green" in predicted.output
    evaluated = run("eval", model, "--data", data)
    assert evaluated.exit_code == 0, evaluated.output + evaluated.stderr
    _no_raw_controls(evaluated.output)
    assert "red\\u202eder" in evaluated.output and "[/x]blue" in evaluated.output and "[bold]green" in evaluated.output and "gr\\u200fey" in evaluated.output


def test_data_check_escapes_file_names(tmp_path):
    root = tmp_path / "data"
    for name in ("[/x]a", "b\u202e"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            _image(root / name / f"{i}.png", 50 * i)
    (root / "[/x]a" / "\x1b[2Jbroken.png").write_bytes(b"not a png")
    result = run("data", "check", root)
    assert result.exit_code == 0, result.output + result.stderr
    _no_raw_controls(result.output + result.stderr)
    assert "\\x1b[2Jbroken.png" in result.output and "[/x]a" in result.output and "b\\u202e" in result.output


def test_inspect_escapes_names_from_the_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["in\x1b[2Jput\u202e"], ["out[/x]"], name="relu")], "g",
        [helper.make_tensor_value_info("in\x1b[2Jput\u202e", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out[/x]", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "names.onnx"
    onnx.save(model, str(path))
    result = run("inspect", path)
    assert result.exit_code == 0, result.output + result.stderr
    _no_raw_controls(result.output)
    assert "in\\x1b[2Jput\\u202e" in result.output and "out[/x]" in result.output


def test_error_lines_are_escaped_too(tmp_path):
    """A one-line error quoting a hostile path stays one plain line (no markup parsed, no escape sequence)."""
    missing = tmp_path / "[/x]\u202emissing"
    result = run("data", "check", missing)
    assert_one_line_error(result, "[/x]\\u202emissing")
    _no_raw_controls(result.stderr)
