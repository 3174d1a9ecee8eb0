"""``edgetl eval``, ``predict`` and ``inspect``: what a model file does, with no TensorFlow for ``.tflite``/``.onnx``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgetl.cli.console import RichProgress, console, err_console, pct, setup_logging
from edgetl.cli.errors import errors_as_exit
from edgetl.cli.options import TrustModelOpt, VerboseOpt
from edgetl.core.text import display_safe


def model_path(path: Path) -> Path:
    """A build/target folder stands for the model file it holds: the one its ``edgetl.json`` names
    (:func:`edgetl.core.metadata.named_model_file`), else its ``model.tflite`` or ``model.onnx``.
    Anything else is passed on as it is, for the command to accept (a Keras run folder) or refuse."""
    if path.is_dir():
        # numpy (via the contract): imported when the command runs, not for --help
        from edgetl.core.metadata import named_model_file

        named = named_model_file(path)
        if named is not None:
            return named
        for name in ("model.tflite", "model.onnx"):
            if (path / name).is_file():
                return path / name
    return path


def eval_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite file, a Keras model, or an edgetl run/build folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled image folder to evaluate on.")],
    against: Annotated[Path | None, typer.Option("--against", help="Float reference model: adds top-1 agreement and accuracy drop.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unreadable image files.")] = False,
    split: Annotated[str, typer.Option("--split", help="all: every image of --data; val or train: only that part of the split recorded in the artifact's edgetl.json (--data is then the training folder; val reproduces the build's figures).")] = "all",
    trust_model: TrustModelOpt = False,
    remote: Annotated[str | None, typer.Option("--remote", help="Run the model on a board and compute the figures from its outputs: ssh://user@host[:port] (it needs Python, numpy and the runtime) or arm64-emulated.", show_default=False)] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="With --remote: private key to log in with (default: ssh-agent and ~/.ssh/id_*).", show_default=False)] = None,
    known_hosts: Annotated[Path | None, typer.Option("--known-hosts", help="With --remote: known_hosts file to check the board's host key against (default ~/.ssh/known_hosts).", show_default=False)] = None,
    insecure_no_host_key_check: Annotated[bool, typer.Option("--insecure-no-host-key-check", help="With --remote: accept any host key. INSECURE: anyone in between can pose as the board.")] = False,
    remote_python: Annotated[str, typer.Option("--remote-python", help="With --remote: the board's Python.")] = "python3",
    verbose: VerboseOpt = 0,
) -> None:
    """Top-1/top-5, per-class accuracy and confusion matrix, with the artifact's own preprocessing (--split val: the build's held-out images only; --remote: outputs made on a board)."""
    setup_logging(verbose)
    with errors_as_exit():
        # the API (numpy, Pillow, the runtimes; no TensorFlow for .tflite/.onnx): imported when the command runs, not for --help
        from edgetl.pipeline import api

        board = None
        if remote is not None:
            # the board code (SSH, the runner): imported only with --remote
            from edgetl.bench.boards import ACCEPTED_FORMS, parse_boards
            from edgetl.core.errors import ConfigError

            boards = parse_boards([remote], identity=identity, known_hosts=known_hosts, insecure=insecure_no_host_key_check, python=remote_python)
            if len(boards) != 1:
                raise ConfigError(f"Received --remote {remote!r}: eval runs on one board; pass one of {ACCEPTED_FORMS}")
            board = boards[0]
        elif identity or known_hosts or insecure_no_host_key_check or remote_python != "python3":
            # pydantic, numpy and the pipeline: imported when the command runs (keeps --help fast)
            from edgetl.core.errors import ConfigError

            raise ConfigError("--identity, --known-hosts, --insecure-no-host-key-check and --remote-python need --remote ssh://user@host")
        report = api.evaluate(model_path(artifact), data, against=model_path(against) if against else None, strict=strict, trust_model=trust_model, split=split, board=board)
        if report.data_note:
            err_console.print(f"[yellow]note:[/] {display_safe(report.data_note)}", highlight=False)
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
            return
        m = report.metrics
        part = {"val": " validation", "train": " training"}.get(report.split, "")
        where = f", outputs made on {display_safe(report.board)}" if report.board else ""
        console.print(f"{display_safe(report.artifact)} ({report.kind}) on {m.num_images}{part} images{where}: top-1 [bold]{pct(m.top1)}[/], top-{m.top_k} {pct(m.top5)}")
        if report.against:
            a = report.against
            console.print(f"against {display_safe(a['artifact'])}: its top-1 {pct(a['top1'])}, drop {100 * a['top1_drop']:+.1f} points, top-1 agreement {pct(a['top1_agreement'])}")
        t = Table(title="per class")
        for col in ("class", "accuracy", "images"):
            t.add_column(col)
        for name, v in m.per_class.items():
            t.add_row(display_safe(name), pct(v["accuracy"]), str(v["support"]))
        console.print(t)
        c = Table(title="confusion (rows: true, columns: predicted)")
        c.add_column("")
        for name in m.class_names:
            c.add_column(display_safe(name[:10]), justify="right")
        for name, row in zip(m.class_names, m.confusion, strict=True):
            c.add_row(display_safe(name), *[str(v) for v in row])
        console.print(c)


def predict(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file with its labels and preprocessing (edgetl.json beside it, or embedded), or an edgetl build folder.", show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders (searched recursively, in batches).", show_default=False)],
    top_k: Annotated[int | None, typer.Option("--top-k", help="Classes to list per image (default 3 on screen, 1 in --csv); more than the model has lists all of them, with a note.", show_default=False)] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write one row per image to this CSV (path relative to its folder, class, confidence, top-k, error), written whole or not at all.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded and run at once (folders and --csv).")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
    trust_model: TrustModelOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Top-k labels and scores for image files or folders, preprocessed as in training (.tflite/.onnx need no TensorFlow); --csv for a whole folder."""
    setup_logging(verbose)
    with errors_as_exit():
        # numpy, Pillow and the runtimes: imported when the command runs, not for --help
        from edgetl.device.predict import predict_images, predict_many

        if csv_out is None and not any(p.is_dir() for p in images):
            report = predict_images(model_path(artifact), images, top_k=3 if top_k is None else top_k, trust_model=trust_model)
            rows = [(image, top, "") for image, top in report.predictions]
        else:
            with RichProgress() as progress:
                report = predict_many(
                    model_path(artifact), images, top_k=(1 if csv_out is not None else 3) if top_k is None else top_k,
                    batch_size=batch_size, csv_path=csv_out, trust_model=trust_model, progress=progress,
                )
            rows = [(row.path, row.top, row.error) for row in report.rows]
        if report.clamped:
            err_console.print(f"[yellow]note:[/] --top-k {report.requested_top_k} is more than the model's {len(report.class_names)} classes; listing all {report.top_k}", highlight=False)
        if csv_out is not None:
            failed, ignored = len(report.failed), len(report.ignored)
            summary = f"wrote {csv_out}: {report.predicted} image(s) predicted"
            summary += f", {failed} unreadable (rows with an error)" if failed else ""
            summary += f", {ignored} file(s) without an image suffix ignored" if ignored else ""
            err_console.print(display_safe(summary), highlight=False)
            if as_json:
                console.print_json(json.dumps(report.to_dict()))
            return
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
            return
        t = Table(title=f"{display_safe(report.artifact)} ({report.kind}): top {report.top_k} of {len(report.class_names)} classes")
        for col, justify in (("image", "left"), ("rank", "right"), ("label", "left"), ("score", "right")):
            t.add_column(col, justify=justify, no_wrap=col == "image")
        for image, top, error in rows:
            if error:
                t.add_row(display_safe(image), "", f"[red]unreadable: {display_safe(error)}[/]", "", end_section=True)
            for rank, p in enumerate(top, 1):
                t.add_row(display_safe(image) if rank == 1 else "", str(rank), display_safe(p.label), f"{p.score:.4f}", end_section=rank == len(top))
        console.print(t)


def inspect_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file (anyone's), or an edgetl build folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Inputs/outputs, ops and parameters; XNNPACK delegation and TFLite Micro support (.tflite); opset, QDQ and int8 kernels in ONNX Runtime (.onnx)."""
    setup_logging(verbose)
    with errors_as_exit():
        # the runtimes and the flatbuffer/ONNX readers: imported when the command runs, not for --help
        from edgetl.device.inspect import inspect_artifact, render

        report = inspect_artifact(model_path(artifact))
        if as_json:
            console.print_json(json.dumps(report))
            return
        for item in render(report):
            console.print(item, highlight=False)
