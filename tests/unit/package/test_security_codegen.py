"""Issue 12, findings 2 and 6 (metadata): metadata is validated by one strict schema when read, and every
value edgetl writes into generated C/C++, Python, Kotlin and Swift is an escaped literal.

The hostile inputs are the issue's own: a ``resize`` that breaks out of a C comment, a ``resize`` in
mathematical-italic letters that Python normalises to a live expression, a model file named like a
Python expression, and class names full of quotes, backslashes, comment ends and bidi marks. Real
LiteRT, real g++, and the generated ``predict.py`` really imported.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.contract import RESIZE_FILTERS, PreprocessContract, check_class_names
from edgetl.core.errors import ArtifactError
from edgetl.core.metadata import (
    EMBEDDED_FORMAT,
    EMBEDDED_METADATA_NAME,
    ModelInfo,
    embedded_metadata,
    model_info_from_embedded,
    read_model_info,
    write_labels,
)
from edgetl.core.text import c_string, kotlin_string, python_string, swift_string
from edgetl.package.apps import python_script
from edgetl.package.c import c_settings_file
from edgetl.package.stage import package
from edgetl.runtime.tflite_file import add_tflite_metadata
from tests.helpers import GOOD, assert_one_line_error

runner = CliRunner()

#: Accepted, but hostile to naive code generation: quotes, backslashes, comment and string ends, templates,
#: interpolation, trigraphs, non-ASCII, a right-to-left override and a right-to-left mark. Four: the fixture model's outputs.
WEIRD_NAMES = [
    'q"uote\'s \\back\\slash\\',
    '*/ /* """ \'\'\' end */ #define X',
    '${x} $y \\(x) `tick` ??= ??/',
    "caf\u00e9 \u202eevil\u200f \U0001f600 \u4e2d",
]
C_PAYLOAD = "bilinear\n#error injected\n//"


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _italic(text: str) -> str:
    """ASCII letters as mathematical italic letters: ``str.upper`` leaves them alone, Python's NFKC
    normalisation of identifiers turns them back into ASCII names."""
    out = []
    for char in text:
        if char == "h":
            out.append("\u210e")  # PLANCK CONSTANT: the italic small h (its slot in the math block is empty)
        elif char.isascii() and char.isalpha():
            out.append(unicodedata.lookup(f"MATHEMATICAL ITALIC {'CAPITAL' if char.isupper() else 'SMALL'} {char.upper()}"))
        else:
            out.append(char)
    return "".join(out)


def italic_payload(marker: Path) -> str:
    """A ``resize`` value that, pasted as ``Image.Resampling.{resize.upper()}``, creates ``marker`` when the code runs."""
    command = "+".join(f"{_italic('chr')}({ord(c)})" for c in f"touch {marker}")
    return f"BILINEAR;{_italic('__import__')}({_italic('chr')}(111)+{_italic('chr')}(115)).{_italic('system')}({command})"


def _model_folder(int8_export, tmp_path: Path, *, name: str = "model.tflite", class_names=None, preprocessing=None) -> Path:
    """A copy of the int8 fixture model beside an edgetl.json whose fields are replaced (written raw, as an attacker would)."""
    model, meta = int8_export
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / name).write_bytes(model.read_bytes())
    data = {**json.loads(json.dumps(meta, default=str)), "model_file": name}
    if class_names is not None:
        data["class_names"] = class_names
    if preprocessing is not None:
        data["preprocessing"] = {**data["preprocessing"], **preprocessing}
    (folder / "edgetl.json").write_text(json.dumps(data), encoding="utf-8")
    return folder / name


def _lone_tflite(int8_export, tmp_path: Path, *, class_names=None, preprocessing=None, name: str = "lone.tflite") -> Path:
    """The fixture model alone in a folder, its embedded ``edgetl`` entry replaced by a crafted one."""
    model, meta = int8_export
    payload = {
        "format": EMBEDDED_FORMAT, "schema_version": 1, "target": "tflite-int8",
        "class_names": class_names if class_names is not None else meta["class_names"],
        "preprocessing": {**meta["preprocessing"], **(preprocessing or {})},
    }
    path = tmp_path / "lone" / name
    path.parent.mkdir()
    path.write_bytes(add_tflite_metadata(model.read_bytes(), EMBEDDED_METADATA_NAME, json.dumps(payload).encode("utf-8")))
    return path


def _gxx() -> str | None:
    gxx = shutil.which("g++")
    if gxx is None:
        if os.environ.get("EDGETL_REQUIRE_GXX"):
            pytest.fail("g++ is required (EDGETL_REQUIRE_GXX is set) but not installed")
        pytest.skip("g++ not installed (apt-get install g++)")
    return gxx


def _import_predict(package_dir: Path, cwd: Path, marker: Path | None = None) -> dict:
    """Import the generated predict.py in a fresh interpreter (as `from predict import classify` would) and read back its constants."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import predict; "
        "print(json.dumps({'labels': predict.LABELS, 'model': predict.MODEL.name, 'resample': predict.RESAMPLE.name, 'exists': predict.MODEL.is_file()}))"
    )
    ran = subprocess.run([sys.executable, "-c", code, str(package_dir)], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert marker is None or not marker.exists(), "importing predict.py ran a command"
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the schema


BAD_PREPROCESSING = [
    ("std", [0, 0, 0]),
    ("std", [1.0, -1.0, 1.0]),
    ("std", [1.0, math.inf, 1.0]),
    ("mean", [127.5]),
    ("mean", [1.0, 2.0, 3.0, 4.0]),
    ("mean", [math.nan, 0.0, 0.0]),
    ("mean", ["1", 2, 3]),
    ("mean", [True, 0, 0]),
    ("input_size", 100000),
    ("input_size", 0),
    ("input_size", 32.5),
    ("input_size", "32"),
    ("resize", C_PAYLOAD),
    ("resize", _italic("bilinear")),
    ("resize", "BILINEAR "),
    ("resize", 3),
    ("channel_order", "BGR"),
    ("layout", "NCHW"),
    ("pixel_range", [0, 65535]),
    ("pixel_range", [0]),
]
BAD_NAMES = [
    ["a\nb", "c"], ["a\rb", "c"], ["a\x1b[31mred", "c"], ["a\x00", "c"], ["a\u2028b", "c"], ["a\x85b", "c"],
    ["", "c"], ["   ", "c"], ["dup", "dup"], [], "circle,square", [1, 2], ["x" * 256, "c"], ["caf\udce9", "c"],
]


@pytest.mark.parametrize("field, value", BAD_PREPROCESSING, ids=[f"{f}={v!r}"[:40] for f, v in BAD_PREPROCESSING])
def test_nonsense_preprocessing_is_refused_with_one_line(field, value, tmp_path):
    path = tmp_path / "edgetl.json"
    path.write_text(json.dumps({"class_names": ["a", "b"], "preprocessing": {**GOOD, field: value}}))
    with pytest.raises(ArtifactError) as caught:
        read_model_info(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and field in message and "allowed" in message
    assert repr(value)[:30] in message, "the value received is quoted (repr)"


@pytest.mark.parametrize("names", BAD_NAMES, ids=[repr(n)[:30] for n in BAD_NAMES])
def test_bad_class_names_are_refused_with_one_line(names, tmp_path):
    path = tmp_path / "edgetl.json"
    path.write_text(json.dumps({"class_names": names, "preprocessing": GOOD}))
    with pytest.raises(ArtifactError) as caught:
        read_model_info(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "class" in message
    payload = embedded_metadata(["a", "b"], PreprocessContract(32)).replace(b'"class_names":["a","b"]', b'"class_names":' + json.dumps(names).encode())
    with pytest.raises(ArtifactError, match="embedded"):
        model_info_from_embedded(payload, "m.tflite")


def test_good_metadata_reads_back_exactly(tmp_path):
    path = tmp_path / "edgetl.json"
    path.write_text(json.dumps({"class_names": WEIRD_NAMES, "preprocessing": {**GOOD, "resize": "BICUBIC"}}))
    info = read_model_info(path)
    assert info.class_names == WEIRD_NAMES and info.contract.resize == "bicubic" and info.contract.std == (127.5,) * 3
    assert model_info_from_embedded(embedded_metadata(WEIRD_NAMES, info.contract), "m").class_names == WEIRD_NAMES


def test_resize_filters_are_the_ones_data_loading_knows():
    from edgetl.data.images import RESAMPLING

    assert set(RESIZE_FILTERS) == set(RESAMPLING)


def test_edgetl_never_writes_what_it_would_refuse(tmp_path):
    with pytest.raises(ArtifactError, match="std"):
        PreprocessContract(32, std=(0.0, 0.0, 0.0)).to_dict()
    with pytest.raises(ArtifactError, match="resize"):
        PreprocessContract(32, resize=C_PAYLOAD).to_dict()
    with pytest.raises(ArtifactError, match="class name"):
        embedded_metadata(["a\nb", "c"], PreprocessContract(32))
    with pytest.raises(ArtifactError, match="class name"):
        write_labels(tmp_path / "labels.txt", ["a\nb", "c"])
    assert not (tmp_path / "labels.txt").exists()
    assert check_class_names(("a", "b")) == ["a", "b"]


def test_onnx_metadata_props_are_validated_too(tmp_path):
    from tests.helpers import _nhwc_onnx_classifier

    model, _ = _nhwc_onnx_classifier(
        tmp_path / "m.onnx", size=8,
        metadata={"labels": json.dumps(["a", "b", "c", "d"]), "preprocessing": json.dumps({**GOOD, "input_size": 8, "std": [0, 0, 0]})},
    )
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = run("predict", model, image)
    assert_one_line_error(result, "metadata_props", "std", "[0, 0, 0]")
    labels_as_dict, _ = _nhwc_onnx_classifier(
        tmp_path / "d.onnx", size=8, metadata={"labels": json.dumps({"a": 1, "b": 2}), "preprocessing": json.dumps({**GOOD, "input_size": 8})},
    )
    assert_one_line_error(run("predict", labels_as_dict, image), "class_names")


# ---------------------------------------------------------------------------------------------- the payloads


def test_c_comment_breakout_in_edgetl_json_is_refused(int8_export, tmp_path):
    model = _model_folder(int8_export, tmp_path, preprocessing={"resize": C_PAYLOAD})
    out = tmp_path / "c"
    result = run("package", model.parent, "--for", "c", "--out", out)
    assert_one_line_error(result, "edgetl.json", "resize", repr(C_PAYLOAD))
    assert not out.exists()
    assert_one_line_error(run("package", model.parent, "--for", "python", "--out", out), "resize")


def test_c_comment_breakout_embedded_in_a_lone_tflite_is_refused(int8_export, tmp_path):
    model = _lone_tflite(int8_export, tmp_path, preprocessing={"resize": C_PAYLOAD})
    for target in ("c", "python"):
        result = run("package", model, "--for", target, "--out", tmp_path / target)
        assert_one_line_error(result, "lone.tflite", "embedded", "resize")
        assert not (tmp_path / target).exists()


def test_generated_c_carries_no_raw_value_even_if_unvalidated(tmp_path):
    """Defence in depth: a contract built in code (not read) still cannot break out of model_settings.h."""
    gxx = _gxx()
    contract = PreprocessContract(32, resize=C_PAYLOAD, channel_order="RGB\\")
    io = {"inputs": [{"shape": [1, 32, 32, 3], "dtype": "int8", "scale": 0.0078125, "zero_point": 0}],
          "outputs": [{"shape": [1, 4], "dtype": "int8", "scale": 0.00390625, "zero_point": -128}]}
    arena = {"measured_bytes": 4096, "step_bytes": 16, "measured_with": "test", "margin_bytes": 0, "margin_rule": "none", "arena_bytes": 4096}
    header = c_settings_file(ModelInfo(["a", "b", "c", "d"], contract), io, arena, 100)
    assert not [line for line in header.splitlines() if line.lstrip().startswith("#error")]
    assert not [line for line in header.splitlines() if line.rstrip().endswith("\\")], "no line splices into the next"
    (tmp_path / "model_settings.h").write_text(header)
    (tmp_path / "main.cc").write_text('#include <cstdio>\n#include "model_settings.h"\nint main() { std::printf("%s", kResizeFilter); return 0; }\n')
    compiled = subprocess.run([gxx, "-std=c++17", "-trigraphs", "-Wall", "-Werror", "main.cc", "-o", "check"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    ran = subprocess.run([str(tmp_path / "check")], capture_output=True, timeout=30)
    assert ran.stdout.decode() == C_PAYLOAD


def test_italic_identifiers_in_resize_never_run(int8_export, tmp_path):
    marker = tmp_path / "pwned-by-resize"
    payload = italic_payload(marker)
    model = _lone_tflite(int8_export, tmp_path, preprocessing={"resize": payload})
    out = tmp_path / "py"
    result = run("package", model, "--for", "python", "--out", out)
    if result.exit_code == 0:  # today's code: predict.py is written; importing it must not run anything
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(out)!r}); import predict"], capture_output=True, timeout=120, cwd=tmp_path)
    assert not marker.exists(), "the payload in the embedded metadata ran"
    assert_one_line_error(result, "resize", "allowed")
    # and the writer itself never turns contract text into an identifier
    with pytest.raises(ArtifactError, match="resize"):
        python_script("model.tflite", ModelInfo(["a", "b"], PreprocessContract(32, resize=payload)))


def test_hostile_model_file_name_is_a_literal_in_every_language(int8_export, tmp_path):
    marker = tmp_path / "pwned"
    name = 'x" if __import__("os").system("touch pwned") else "m.tflite'
    model = tmp_path / "lone" / name
    model.parent.mkdir()
    model.write_bytes(int8_export[0].read_bytes())  # alone, with its own (valid) embedded metadata
    for target in ("python", "android", "ios"):
        result = run("package", model, "--for", target, "--out", tmp_path / target)
        assert result.exit_code == 0, result.output + result.stderr
    script = (tmp_path / "python" / "predict.py").read_text()
    ast.parse(script)
    read_back = _import_predict(tmp_path / "python", cwd=tmp_path, marker=marker)
    assert read_back["model"] == name and read_back["exists"] and read_back["labels"] == int8_export[1]["class_names"]
    kotlin = (tmp_path / "android" / "README.md").read_text()
    assert decode_kotlin(_literal_after(kotlin, "openFd(")) == name
    swift = (tmp_path / "ios" / "README.md").read_text()
    assert decode_swift(_literal_after(swift, "forResource: ")) == Path(name).stem
    assert decode_swift(_literal_after(swift, "ofType: ")) == "tflite"


def test_weird_class_names_survive_every_package_exactly(int8_export, tmp_path):
    gxx = _gxx()
    model = _model_folder(int8_export, tmp_path, class_names=WEIRD_NAMES)
    for target in ("c", "python", "android", "ios"):
        result = run("package", model.parent, "--for", target, "--out", tmp_path / target)
        assert result.exit_code == 0, result.output + result.stderr
        labels = tmp_path / target / "labels.txt"
        if labels.exists():
            assert labels.read_text(encoding="utf-8").splitlines() == WEIRD_NAMES
        for readme_line in (tmp_path / target / "README.md").read_text(encoding="utf-8").splitlines():
            assert "\u202e" not in readme_line and "\u200f" not in readme_line, "bidi controls are escaped in READMEs"
    # C/C++: compiles warning-free (trigraphs on) and the labels read back byte for byte
    from tests.helpers import _stub_resolver

    c_dir = tmp_path / "c"
    (c_dir / "stub_tflm.h").write_text(_stub_resolver())
    (c_dir / "main.cc").write_text(
        '#define EDGETL_MODEL_OPS_NO_TFLM_INCLUDE\n#include "stub_tflm.h"\n#include <cstdio>\n'
        '#include "labels.h"\n#include "model_data.h"\n#include "model_ops.h"\n#include "model_settings.h"\n'
        "int main() {\n  for (int i = 0; i < kCategoryCount; ++i) {\n"
        '    for (const char* p = kCategoryLabels[i]; *p; ++p) std::printf("%02x", static_cast<unsigned char>(*p));\n'
        '    std::printf("\\n");\n  }\n  return 0;\n}\n'
    )
    compiled = subprocess.run(
        [gxx, "-std=c++17", "-trigraphs", "-Wall", "-Wextra", "-Werror", "main.cc", "model_data.cc", "-o", "check"],
        cwd=c_dir, capture_output=True, text=True, timeout=300,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    ran = subprocess.run([str(c_dir / "check")], capture_output=True, text=True, timeout=60)
    assert ran.stdout.split() == [n.encode("utf-8").hex() for n in WEIRD_NAMES]
    # Python: parses, imports without side effects, and its labels are the class names exactly
    ast.parse((tmp_path / "python" / "predict.py").read_text(encoding="utf-8"))
    assert _import_predict(tmp_path / "python", cwd=tmp_path)["labels"] == WEIRD_NAMES


def test_onnx_python_package_with_hostile_file_and_class_names(tmp_path):
    """No TensorFlow: an ONNX model (labels in metadata_props) named like a Python expression, with the weird
    class names; the generated predict.py classifies an image and runs nothing else."""
    from PIL import Image

    from tests.helpers import _nhwc_onnx_classifier

    name = 'x" if __import__("os").system("touch pwned") else "m.onnx'
    (tmp_path / "in").mkdir()
    model, _ = _nhwc_onnx_classifier(
        tmp_path / "in" / name, size=8, metadata={"labels": json.dumps(WEIRD_NAMES), "preprocessing": json.dumps({**GOOD, "input_size": 8})},
    )
    out = tmp_path / "py"
    package(model, "python", out)
    ast.parse((out / "predict.py").read_text(encoding="utf-8"))
    image = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(image)
    ran = subprocess.run([sys.executable, str(out / "predict.py"), str(image)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert not (tmp_path / "pwned").exists(), "running predict.py ran the command in the model's file name"
    assert ran.returncode == 0, ran.stderr[-2000:]
    top = json.loads(ran.stdout.strip().splitlines()[-1])["top"]
    assert {t["label"] for t in top} <= set(WEIRD_NAMES) and len(top) == 3
    assert _import_predict(out, cwd=tmp_path)["labels"] == WEIRD_NAMES


# ---------------------------------------------------------------------------------------------- literal writers


LITERAL_CASES = ["", "plain", 'q"uote', "back\\slash\\", "new\nline\r\t", "$x ${x} \\(x)", "*/ /* ??= ??/", "caf\u00e9 \u202e \U0001f600", "\x00\x7f\x85"]


@pytest.mark.parametrize("text", LITERAL_CASES, ids=[repr(t)[:24] for t in LITERAL_CASES])
def test_literal_writers_round_trip(text):
    assert ast.literal_eval(python_string(text)) == text
    assert decode_kotlin(kotlin_string(text)) == text and decode_swift(swift_string(text)) == text
    assert decode_c(c_string(text)) == text.encode("utf-8")
    for literal in (kotlin_string(text), swift_string(text), c_string(text)):
        body = literal[1:-1]
        assert all(" " <= ch <= "~" for ch in body), "printable ASCII only"
        assert '"' not in body.replace('\\"', ""), "no unescaped quote"
    assert "$" not in kotlin_string(text).replace("\\$", ""), "no Kotlin template"
    assert "\\(" not in swift_string(text).replace("\\\\", ""), "no Swift interpolation"
    assert "??" not in c_string(text), "no trigraph"


def _literal_after(source: str, prefix: str) -> str:
    start = source.index(prefix) + len(prefix)
    assert source[start] == '"', source[start : start + 40]
    i = start + 1
    while source[i] != '"':
        i += 2 if source[i] == "\\" else 1
    return source[start : i + 1]


def decode_kotlin(literal: str) -> str:
    """Kotlin string literal -> text (the escapes Kotlin defines; ``$`` unescaped would be a template: refused)."""
    assert literal[0] == literal[-1] == '"'
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        assert ch not in '"$' and ch != "\n", f"unescaped {ch!r} in {literal}"
        if ch == "\\":
            nxt = body[i + 1]
            if nxt == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "b": "\b", "n": "\n", "r": "\r", "'": "'", '"': '"', "\\": "\\", "$": "$"}[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def decode_swift(literal: str) -> str:
    """Swift string literal -> text (``\\(`` would be interpolation: refused)."""
    assert literal[0] == literal[-1] == '"'
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        assert ch != '"' and ch != "\n", f"unescaped {ch!r} in {literal}"
        if ch == "\\":
            nxt = body[i + 1]
            assert nxt != "(", f"interpolation in {literal}"
            if nxt == "u":
                end = body.index("}", i)
                out.append(chr(int(body[i + 3 : end], 16)))
                i = end + 1
                continue
            out.append({"0": "\0", "t": "\t", "n": "\n", "r": "\r", "'": "'", '"': '"', "\\": "\\"}[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def decode_c(literal: str) -> bytes:
    """C string literal (printable ASCII and octal escapes, as c_string writes) -> bytes."""
    assert literal[0] == literal[-1] == '"'
    body, out, i = literal[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] == "\\":
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(ord(body[i]))
            i += 1
    return bytes(out)


@pytest.mark.parametrize("model_file", ["../outside.h5", "/etc/passwd", "sub/../../x.tflite", "..", "a\\b.h5"])
def test_model_file_in_metadata_cannot_leave_its_folder(tmp_path, model_file):
    """`model_file` in a stranger's edgetl.json names a file inside that folder, never a path out of it."""
    import json

    from edgetl.core.contract import PreprocessContract
    from edgetl.core.metadata import read_model_info

    (tmp_path / "outside.h5").write_bytes(b"not a model")
    run = tmp_path / "run"
    run.mkdir()
    meta = {"kind": "keras-qat", "model_file": model_file, "class_names": ["a", "b"], "preprocessing": PreprocessContract(input_size=32).to_dict()}
    (run / "edgetl.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="is not a file name inside its folder"):
        read_model_info(run)
