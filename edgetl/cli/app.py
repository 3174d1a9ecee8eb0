"""The ``edgetl`` command line: parse, build a config, make one API call, show the result.

Nothing heavy is imported at module level (TensorFlow loads only inside commands that train or
convert), so ``edgetl --help`` and every subcommand's ``--help`` are instant. Errors the user
can fix (:class:`EdgetlError`) print one line to stderr and exit non-zero; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.text import display_safe
from edgetl.core.types import IODType, PackageFor, QuantMode

app = typer.Typer(
    name="edgetl",
    help="Fine-tune an image classifier on a folder of labelled photos, quantize it, export it for "
    "phones, boards and microcontrollers, and measure its accuracy and latency there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect image folders.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

# Options that mean the same thing in every command that takes them.
DataOpt = Annotated[Path | None, typer.Option("--data", help="Image folder with one subfolder per class (class name = folder name).")]
BackboneOpt = Annotated[str | None, typer.Option("--model", help="Backbone to fine-tune (see `edgetl backbones`), e.g. mobilenet_v2.")]
InputSizeOpt = Annotated[int | None, typer.Option("--input-size", help="Square input size in pixels (default: the backbone recipe's).")]
AlphaOpt = Annotated[float | None, typer.Option("--alpha", help="MobileNet width multiplier, e.g. 0.35, 0.5, 1.0.")]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="'imagenet' (from ~/.keras/models, downloaded if online), 'none' (train from scratch) or a path to a .h5 weights file."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="edgetl.toml with any of the settings; flags override it.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an output folder that holds a different run or build.")]
StrictOpt = Annotated[bool | None, typer.Option("--strict", help="Fail on unreadable image files instead of skipping them.")]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")]
TrustModelOpt = Annotated[
    bool,
    typer.Option("--trust-model", help="Load a Keras model even if it carries Python code (Lambda layers, custom modules), which then runs: only for files you trust."),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option("--deterministic", help="TensorFlow op determinism: the same --seed gives the same weights, metrics and model bytes (slower). Default: [train] deterministic, else off."),
]


def _setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=err_console, show_path=False)
    handler.addFilter(_display_safe_record)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
    if verbose == 0:  # TensorFlow's deprecation chatter is not the user's business
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def _display_safe_record(record: logging.LogRecord) -> bool:
    """Log messages carry file and class names: escape control and bidi characters before they reach the terminal."""
    try:
        record.msg, record.args = display_safe(record.getMessage(), markup=False), None
    except (TypeError, ValueError):  # a malformed log call: let the handler report it as usual
        pass
    return True


@contextmanager
def _errors_as_exit():
    """EdgetlError -> one line on stderr, non-zero exit, no traceback."""
    try:
        yield
    except EdgetlError as exc:
        err_console.print(f"[bold red]error:[/] {display_safe(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        _stop_terminate_retry()
        how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        err_console.print(f"[bold red]{how}[/]: nothing half-written was left under a final name")
        raise typer.Exit(code) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that the same clean-up as for Ctrl-C runs (exit 143)."""


#: Seconds after SIGTERM before Terminated is raised again, while it has not ended the command.
TERMINATE_RETRY_S = 2.0


def _raise_terminated(signum: int, frame: object) -> None:
    import signal

    # Python ignores an exception raised while a finalizer or weakref callback runs ("Exception ignored
    # in ..."): if the signal lands there, SIGALRM raises it again until _errors_as_exit or main() stop it.
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.setitimer(signal.ITIMER_REAL, TERMINATE_RETRY_S)
    raise Terminated()


def _stop_terminate_retry() -> None:
    import signal

    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.setitimer(signal.ITIMER_REAL, 0)


def _handle_sigterm() -> None:
    import signal

    with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread, or no such signals here
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGALRM, _raise_terminated)


class RichProgress:
    """The library's progress callback drawn as rich progress bars, one per stage."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[message]}"), console=err_console, transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, task: str, completed: int, total: int, message: str = "") -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total or None, message=message)
        self.progress.update(self.tasks[task], completed=completed, total=total or None, message=message)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _output_lock(out: Path):
    """Refuse to write ``out`` while another edgetl process writes it (one line, see edgetl.core.fs.output_lock)."""
    from edgetl.core.fs import output_lock

    return output_lock(out)


def _resolve(config: Path | None, flags: dict[str, Any]):
    from edgetl.pipeline.config import resolve_config

    return resolve_config(config, flags)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"edgetl {__version__}")
        raise typer.Exit()


# ----------------------------------------------------------------------------- data check
@data_app.command("check")
def data_check(
    directory: Annotated[Path, typer.Argument(help="Image folder to check (one subfolder per class).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Report classes, images per class, sizes and modes, imbalance, and unreadable files."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.data.images import check_folder

        scan = check_folder(directory)
        report = {
            "root": str(scan.root),
            "classes": scan.class_names,
            "counts": scan.counts,
            "images": int(sum(scan.counts.values())),
            "imbalance": scan.imbalance if scan.counts and min(scan.counts.values()) > 0 else None,
            "sizes": {f"{w}x{h}": n for (w, h), n in scan.sizes.most_common()},
            "modes": dict(scan.modes.most_common()),
            "unreadable": [{"path": str(s.path), "reason": s.reason} for s in scan.skipped],
        }
        problems = _data_problems(report)
        report["problems"] = problems
        if as_json:
            console.print_json(json.dumps(report))
            return
        t = Table(title=f"{display_safe(scan.root)}: {len(scan.class_names)} classes, {report['images']} readable images")
        t.add_column("class")
        t.add_column("images", justify="right")
        for name in scan.class_names:
            t.add_row(display_safe(name), str(scan.counts.get(name, 0)))
        console.print(t)
        sizes = ", ".join(f"{k} ({v})" for k, v in list(report["sizes"].items())[:8])
        console.print(f"sizes: {sizes}{' ...' if len(report['sizes']) > 8 else ''}")
        console.print(f"modes: {', '.join(f'{k} ({v})' for k, v in report['modes'].items())}")
        if report["imbalance"] is not None:
            console.print(f"imbalance (largest / smallest class): {report['imbalance']:.2f}")
        if scan.skipped:
            console.print(f"[yellow]{len(scan.skipped)} unreadable file(s), skipped in training:[/]")
            for s in scan.skipped[:20]:
                console.print(f"  {display_safe(s.path)}: {display_safe(s.reason)}", highlight=False)
            if len(scan.skipped) > 20:
                console.print(f"  ... and {len(scan.skipped) - 20} more (see --json)")
        for p in problems:
            console.print(f"[yellow]warning:[/] {display_safe(p)}", highlight=False)


def _data_problems(report: dict[str, Any]) -> list[str]:
    problems = []
    empty = [name for name, n in report["counts"].items() if n == 0]
    if empty:
        problems.append(f"class folder(s) with no readable images: {', '.join(empty)} (training will refuse them)")
    if len(report["classes"]) < 2:
        problems.append("fewer than 2 classes: a classifier needs at least 2")
    if report["imbalance"] is not None and report["imbalance"] > 3:
        problems.append(f"classes are imbalanced ({report['imbalance']:.1f}x): consider more images for the small ones")
    return problems


# ----------------------------------------------------------------------------- train
def _training_flags(
    data: Path | None, backbone: str | None, input_size: int | None, alpha: float | None, weights: str | None,
    val: Path | None, val_split: float | None, seed: int | None, batch_size: int | None, head_epochs: int | None,
    fine_tune_epochs: int | None, unfreeze: int | None, unfreeze_from: str | None, augment: bool | None, strict: bool | None,
    unfreeze_blocks: int | None = None, clean_epochs: int | None = None,
) -> dict[str, Any]:
    return {
        "data.path": str(data) if data else None, "model.name": backbone, "model.input_size": input_size,
        "model.alpha": alpha, "model.weights": weights, "data.val_path": str(val) if val else None,
        "data.val_split": val_split, "data.seed": seed, "data.batch_size": batch_size,
        "train.head_epochs": head_epochs, "train.fine_tune_epochs": fine_tune_epochs,
        "train.unfreeze": unfreeze, "train.unfreeze_from": unfreeze_from, "train.unfreeze_blocks": unfreeze_blocks,
        "train.augment": augment, "train.clean_epochs": clean_epochs,
        "data.strict": strict,
    }


ValOpt = Annotated[Path | None, typer.Option("--val", help="Separate validation folder (same classes); default: a seeded split of --data.")]
ValSplitOpt = Annotated[float | None, typer.Option("--val-split", help="Fraction of --data held out for validation (default 0.2).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for the split, shuffling and initialisation (default 42).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Training batch size (default 32).")]
HeadEpochsOpt = Annotated[int | None, typer.Option("--head-epochs", help="Phase 1 epochs: new head on the frozen backbone.")]
FineEpochsOpt = Annotated[int | None, typer.Option("--fine-tune-epochs", help="Phase 2 epochs (early stopping on validation loss).")]
UnfreezeOpt = Annotated[int | None, typer.Option("--unfreeze", help="Phase 2 trains the top N backbone layers (default: from the backbone's recipe block).")]
UnfreezeFromOpt = Annotated[str | None, typer.Option("--unfreeze-from", help="Phase 2 trains from this layer name to the top, e.g. block_13_expand.")]
UnfreezeBlocksOpt = Annotated[int | None, typer.Option("--unfreeze-blocks", help="Phase 2 trains the top N blocks of the backbone (blocks as `edgetl backbones` names them).")]
AugmentOpt = Annotated[bool | None, typer.Option("--augment/--no-augment", help="Light augmentation (flip, rotation, zoom, contrast) in phase 2; on by default.")]
CleanEpochsOpt = Annotated[int | None, typer.Option("--clean-epochs", help="Phase 3 after an augmented phase 2: epochs on un-augmented images, BatchNorm frozen, kept only if validation loss falls (default 3; 0: off).")]


@app.command()
def train(
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (model.keras, labels.txt, history.json, curves, logs).")] = Path("runs/train"),
    input_size: InputSizeOpt = None,
    alpha: AlphaOpt = None,
    weights: WeightsOpt = None,
    config: ConfigOpt = None,
    val: ValOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = None,
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    unfreeze: UnfreezeOpt = None,
    unfreeze_from: UnfreezeFromOpt = None,
    unfreeze_blocks: UnfreezeBlocksOpt = None,
    augment: AugmentOpt = None,
    clean_epochs: CleanEpochsOpt = None,
    strict: StrictOpt = None,
    deterministic: DeterministicOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Freeze-then-unfreeze transfer learning: a new head on the frozen backbone, then its top layers."""
    _setup_logging(verbose)
    with _errors_as_exit():
        flags = _training_flags(data, backbone, input_size, alpha, weights, val, val_split, seed, batch_size, head_epochs, fine_tune_epochs, unfreeze, unfreeze_from, augment, strict, unfreeze_blocks, clean_epochs)
        cfg = _resolve(config, {**flags, "train.deterministic": True if deterministic else None})
        from edgetl.ml.train import train as run_train

        with _output_lock(out), RichProgress() as progress:
            result = run_train(cfg, out, force=force, progress=progress)
        console.print(f"trained {cfg.model.name}: validation top-1 [bold]{_pct(result.val_accuracy)}[/] -> {display_safe(result.out_dir)}")


# ----------------------------------------------------------------------------- qat
@app.command()
def qat(
    model: Annotated[Path, typer.Option("--model", help="Trained float model: a `edgetl train` run folder.")],
    data: DataOpt = None,
    mode: Annotated[QuantMode, typer.Option("--mode", help="qat: quantization-aware fine-tuning (writes a QAT Keras model); ptq: post-training int8 of the float model (writes a calibrated int8 .tflite).")] = QuantMode.qat,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <model>-qat or <model>-ptq).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="QAT epochs (default 3).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="QAT learning rate (default: the backbone recipe's, 1e-5 for mobilenet_v2).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="PTQ: training images used to calibrate int8 ranges.")] = 200,
    config: ConfigOpt = None,
    strict: StrictOpt = None,
    deterministic: DeterministicOpt = False,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Quantize a trained float model: QAT (tfmot, same data split) or PTQ, to compare the two."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.core.metadata import read_model_info

        info = read_model_info(model)
        if info.extra.get("kind") != "keras-float":
            raise EdgetlError(f"{model} is not a float training run (kind {info.extra.get('kind')!r}); pass the folder `edgetl train` wrote")
        float_top1 = info.extra.get("val_accuracy")
        if mode is QuantMode.ptq:
            from edgetl.pipeline.api import export_model

            target = out or model.with_name(model.name + "-ptq")
            with _output_lock(target):
                artifact, meta = export_model(model, "tflite-int8", data=data, out=target, samples=samples, force=force, trust_model=trust_model)
            console.print(
                f"PTQ int8 (LiteRT): validation top-1 [bold]{_pct(meta['accuracy']['artifact_top1'])}[/] (float {_pct(float_top1)}), "
                f"{meta['size_bytes'] / 1024:.1f} KiB -> {display_safe(artifact)}"
            )
            return
        run_cfg = info.extra.get("config", {})
        flags = {
            "model.name": info.backbone, "model.weights": run_cfg.get("model", {}).get("weights"),
            "model.input_size": info.contract.input_size,
            "data.path": str(data) if data else run_cfg.get("data", {}).get("path"),
            "data.val_path": run_cfg.get("data", {}).get("val_path"), "data.val_split": run_cfg.get("data", {}).get("val_split"),
            "data.seed": run_cfg.get("data", {}).get("seed"), "data.strict": strict,
            "qat.epochs": epochs, "qat.lr": lr, "qat.mode": QuantMode.qat.value,
            "train.deterministic": True if deterministic else run_cfg.get("train", {}).get("deterministic"),
        }
        cfg = _resolve(config, flags)
        from edgetl.ml.qat import load_keras_artifact
        from edgetl.ml.qat import qat as run_qat

        float_model, _ = load_keras_artifact(model, trust_model=trust_model)
        target = out or model.with_name(model.name + "-qat")
        with _output_lock(target), RichProgress() as progress:
            result = run_qat(cfg, float_model, class_names=info.class_names, contract=info.contract, out_dir=target, force=force, progress=progress)
        console.print(
            f"QAT model (Keras, fake-quantized): validation top-1 [bold]{_pct(result.val_accuracy)}[/] (float {_pct(float_top1)}) -> {display_safe(target)}; "
            f"`edgetl export --model {display_safe(target)}` makes the int8 .tflite"
        )


# ----------------------------------------------------------------------------- export
@app.command()
def export(
    model: Annotated[Path, typer.Option("--model", help="Float or QAT run folder (or .keras/.h5 file with edgetl.json beside it).")],
    fmt: Annotated[str, typer.Option("--format", help="tflite-int8, tflite-fp16, tflite-fp32, onnx-int8 or onnx-fp32.")] = "tflite-int8",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset of onnx-* formats (13-18).")] = 17,
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <model>-<format>).")] = None,
    io_dtype: Annotated[IODType, typer.Option("--io-dtype", help="Input/output dtype of int8 models.")] = IODType.int8,
    samples: Annotated[int, typer.Option("--samples", help="Training images used to calibrate int8.")] = 200,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Convert a trained model to TFLite or ONNX. A float model exported to int8 is post-training quantized."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.export import TARGETS

        target = TARGETS.get(fmt)
        from edgetl.pipeline.api import export_model

        with _output_lock(out or model.with_name(f"{model.name}-{target.name}")):  # export_model's default folder
            artifact, meta = export_model(model, target.name, data=data, out=out, io_dtype=io_dtype, samples=samples, force=force, opset=opset, trust_model=trust_model)
        console.print(f"wrote {display_safe(artifact)} ({meta['size_bytes'] / 1024:.1f} KiB, {target.name}{', ' + meta['quantization_mode'] if meta.get('quantization_mode') else ''})")


# ----------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite file, a Keras model, or an edgetl run/build folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled image folder to evaluate on.")],
    against: Annotated[Path | None, typer.Option("--against", help="Float reference model: adds top-1 agreement and accuracy drop.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unreadable image files.")] = False,
    trust_model: TrustModelOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Top-1/top-5, per-class accuracy and confusion matrix, with the artifact's own preprocessing."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.device.evaluate import evaluate

        report = evaluate(_model_file(artifact), data, against=_model_file(against) if against else None, strict=strict, trust_model=trust_model)
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
            return
        m = report.metrics
        console.print(f"{display_safe(report.artifact)} ({report.kind}) on {m.num_images} images: top-1 [bold]{_pct(m.top1)}[/], top-{m.top_k} {_pct(m.top5)}")
        if report.against:
            a = report.against
            console.print(f"against {display_safe(a['artifact'])}: its top-1 {_pct(a['top1'])}, drop {100 * a['top1_drop']:+.1f} points, top-1 agreement {_pct(a['top1_agreement'])}")
        t = Table(title="per class")
        for col in ("class", "accuracy", "images"):
            t.add_column(col)
        for name, v in m.per_class.items():
            t.add_row(display_safe(name), _pct(v["accuracy"]), str(v["support"]))
        console.print(t)
        c = Table(title="confusion (rows: true, columns: predicted)")
        c.add_column("")
        for name in m.class_names:
            c.add_column(display_safe(name[:10]), justify="right")
        for name, row in zip(m.class_names, m.confusion, strict=True):
            c.add_row(display_safe(name), *[str(v) for v in row])
        console.print(c)


def _model_file(path: Path) -> Path:
    """A build/target folder stands for the model file it holds."""
    if path.is_dir():
        marker = path / "edgetl.json"
        if marker.is_file():
            try:
                named = json.loads(marker.read_text()).get("model_file")
            except (OSError, ValueError):
                named = None
            from edgetl.core.metadata import is_plain_file_name

            if is_plain_file_name(named) and (path / named).is_file():
                return path / named
        for name in ("model.tflite", "model.onnx"):
            if (path / name).is_file():
                return path / name
    return path


# ----------------------------------------------------------------------------- build
@app.command()
def build(
    target: Annotated[str | None, typer.Option("--target", help="tflite-int8 (QAT, full-integer), tflite-fp16, tflite-fp32, onnx-int8 (QAT scales, int8 in ONNX Runtime) or onnx-fp32.")] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset of onnx-* targets (13-18, default 17).")] = None,
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    input_size: InputSizeOpt = None,
    alpha: AlphaOpt = None,
    weights: WeightsOpt = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Root of build folders (default: build); writes <out>/<name>/<target>/.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Build name (default: the data folder's name).")] = None,
    mode: Annotated[QuantMode | None, typer.Option("--mode", help="int8 ranges from QAT (default) or post-training calibration (ptq).")] = None,
    qat_epochs: Annotated[int | None, typer.Option("--qat-epochs", help="QAT epochs (default 3).")] = None,
    io_dtype: Annotated[IODType | None, typer.Option("--io-dtype", help="Input/output dtype of int8 models.")] = None,
    val: ValOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = None,
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    unfreeze: UnfreezeOpt = None,
    unfreeze_from: UnfreezeFromOpt = None,
    unfreeze_blocks: UnfreezeBlocksOpt = None,
    augment: AugmentOpt = None,
    clean_epochs: CleanEpochsOpt = None,
    strict: StrictOpt = None,
    package: Annotated[list[PackageFor] | None, typer.Option("--package", help="Also bundle the artifact for apps into <target>/package-<for>/: c (TFLite Micro, needs tflite-int8), android, ios, python; repeat for several. Budgets: [package] in --config.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved configuration and exit.")] = False,
    deterministic: DeterministicOpt = False,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """The whole pipeline: train -> QAT -> export -> verify -> benchmark, into one output folder."""
    _setup_logging(verbose)
    with _errors_as_exit():
        flags = _training_flags(data, backbone, input_size, alpha, weights, val, val_split, seed, batch_size, head_epochs, fine_tune_epochs, unfreeze, unfreeze_from, augment, strict, unfreeze_blocks, clean_epochs)
        flags.update({
            "train.deterministic": True if deterministic else None,
            "target": target, "out": str(out) if out else None, "name": name,
            "qat.mode": mode.value if mode else None, "qat.epochs": qat_epochs,
            "export.io_dtype": io_dtype.value if io_dtype else None, "export.opset": opset,
            "package.targets": [p.value for p in package] if package else None,
        })
        cfg = _resolve(config, flags)
        from edgetl.pipeline.build import check_build

        check_build(cfg)
        if dry_run:
            console.print_json(json.dumps(cfg.to_toml_dict()))
            return
        result = _run_build(cfg, force, trust_model=trust_model)
        _print_build_summary(result)


def _run_build(cfg, force: bool, trust_model: bool = False):
    from edgetl.pipeline.build import build as run_build

    with RichProgress() as progress:
        return run_build(cfg, force=force, progress=progress, trust_model=trust_model)


def _print_build_summary(result, elapsed_s: float | None = None) -> None:
    names = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
    s = result.summary
    runtime = names.get(s.get("runtime", "litert"), s.get("runtime"))
    other = s.get("companion")
    t = Table(title=f"edgetl build -> {display_safe(result.out_dir)}")
    for col, justify in (("model", "left"), ("runtime", "left"), ("top-1", "right"), ("p50 ms, 1 thread", "right")):
        t.add_column(col, justify=justify)
    t.add_row("float", "Keras", _pct(s["float_top1"]), "")
    if s.get("ptq_top1") is not None:
        t.add_row("PTQ int8", "LiteRT", _pct(s["ptq_top1"]), "")
    if s["source"] == "qat":
        t.add_row("QAT", "Keras", _pct(s["source_keras_top1"]), "")

    def p50(latency):
        return next((f"{e['stats']['p50_ms']:.3f}" for e in latency if e["threads"] == 1), "")

    t.add_row(result.target, runtime, _pct(s["artifact_top1"]), p50(s["latency"]))
    if other:
        t.add_row(f"{other['target']} (same scales)", names.get(other["runtime"], other["runtime"]), _pct(other["artifact_top1"]), p50(other["latency"]))
    console.print(t)
    lat = Table(title=f"{Path(s['artifact']).name}: {s['size_bytes'] / 1024:.1f} KiB, {runtime} latency (ms, batch 1)")
    for col in ("threads", "p50", "p90", "p99"):
        lat.add_column(col, justify="right")
    for entry in s["latency"]:
        st = entry["stats"]
        lat.add_row(str(entry["threads"]), f"{st['p50_ms']:.3f}", f"{st['p90_ms']:.3f}", f"{st['p99_ms']:.3f}")
    console.print(lat)
    if elapsed_s is not None:
        console.print(f"done in {elapsed_s:.0f} s; report: {display_safe(result.out_dir / 'report.md')}")
    else:
        console.print(f"report: {display_safe(result.out_dir / 'report.md')}")


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the generated images and the build.")] = Path("edgetl-demo"),
    images_per_class: Annotated[int, typer.Option("--images-per-class", help="Generated images per shape class.")] = 250,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Generate a small shapes dataset (real PNG files) and run the whole int8 build on it."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.pipeline.demo import run_demo

        start = time.perf_counter()
        with RichProgress() as progress:
            result = run_demo(out, images_per_class=images_per_class, force=force, progress=progress)
        _print_build_summary(result, time.perf_counter() - start)


# ----------------------------------------------------------------------------- backbones
@app.command()
def backbones(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the registered backbones: input sizes, parameters and MACs (1000-class head, default size), targets."""
    with _errors_as_exit():
        from edgetl.ml.backbones import BACKBONES, describe_backbone

        rows = [describe_backbone(spec) for _, spec in BACKBONES.items()]
        if as_json:
            console.print_json(json.dumps(rows))
            return
        t = Table(title="registered backbones (parameters and MACs with a 1000-class head, at the default size)")
        t.add_column("name", no_wrap=True)
        for col in ("default size", "min size", "ImageNet sizes", "alphas", "params", "MACs", "QAT recipe", "targets"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                r["name"], str(r["default_input_size"]), str(r["min_input_size"]), ", ".join(map(str, r["pretrained_sizes"])) or "none (--weights none|PATH)",
                ", ".join(map(str, r["alphas"])) or "-", f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e6:.0f} M", r["qat_recipe"], ", ".join(r["targets"]),
            )
        console.print(t)


# ----------------------------------------------------------------------------- bench
@app.command("bench")
def bench_cmd(
    artifacts: Annotated[list[Path], typer.Argument(help=".onnx or .tflite files, edgetl's or anyone's (no edgetl.json needed).", show_default=False)],
    runtime: Annotated[str | None, typer.Option("--runtime", help="onnxruntime or litert (default by suffix: .onnx -> onnxruntime, .tflite -> litert).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Thread counts, comma-separated, e.g. 1,2,4; each is measured in a fresh process.")] = "1",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs after the first (cold-start) run.")] = 20,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs (default 200). Not with --duration.", show_default=False)] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Time runs for this long instead of --runs: 10s, 500ms, 2m.", show_default=False)] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Size of dynamic batch dimensions (default 1).", show_default=False)] = None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="Size of an input with dynamic dimensions: NAME=1x224x224x3 (repeat per input).", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json, report.md and report.html.")] = Path("bench-results"),
    remote: Annotated[str | None, typer.Option("--remote", help="Measure on a board over SSH: ssh://user@host[:port] (it needs Python, numpy and the runtime).", show_default=False)] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="With --remote: private key to log in with (default: ssh-agent and ~/.ssh/id_*).", show_default=False)] = None,
    known_hosts: Annotated[Path | None, typer.Option("--known-hosts", help="With --remote: known_hosts file to check the board's host key against (default ~/.ssh/known_hosts).", show_default=False)] = None,
    insecure_no_host_key_check: Annotated[bool, typer.Option("--insecure-no-host-key-check", help="With --remote: accept any host key. INSECURE: anyone in between can pose as the board.")] = False,
    remote_python: Annotated[str, typer.Option("--remote-python", help="With --remote: the board's Python.")] = "python3",
    verbose: VerboseOpt = 0,
) -> None:
    """Latency (p50-p99), throughput, cold start, peak memory and top ops of .onnx/.tflite files, per thread count (here, or on a board with --remote)."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.bench import harness
        from edgetl.core.errors import ConfigError

        if runs is not None and duration is not None:
            raise ConfigError("Received both --runs and --duration; pass one of them")
        shapes: dict[str, tuple[int, ...]] = {}
        for text in shape or []:
            name, dims = harness.parse_shape(text)
            if name in shapes:
                raise ConfigError(f"Received --shape twice for input {name!r}; pass it once")
            shapes[name] = dims
        options = harness.BenchOptions(
            threads=harness.parse_threads(threads), warmup=warmup, runs=runs,
            duration_s=harness.parse_duration(duration) if duration is not None else None,
            batch=batch, shapes=shapes, runtime=runtime,
        )
        target = None
        if remote is not None:
            from edgetl.bench.remote import make_target

            target = make_target(remote, identity=identity, known_hosts=known_hosts, insecure=insecure_no_host_key_check, python=remote_python)
        elif identity or known_hosts or insecure_no_host_key_check or remote_python != "python3":
            raise ConfigError("--identity, --known-hosts, --insecure-no-host-key-check and --remote-python need --remote ssh://user@host")
        harness.check_output_dir(out)
        plans = harness.plan_bench(artifacts, options)  # bad files and shapes fail before the progress display starts
        with RichProgress() as progress:
            if target is not None:
                from edgetl.bench.remote import run_remote_bench

                doc = run_remote_bench(plans, options, target, progress=progress)
            else:
                doc = harness.run_bench(plans, options, progress=progress)
        written = harness.write_bench(doc, out)
        t = Table(title="latency per call (ms); cold start in ms, peak RSS in MiB")
        t.add_column("artifact", no_wrap=True)
        for col in ("threads", "p50", "p90", "p99", "mean", "per s", "cold", "RSS"):
            t.add_column(col, justify="right")
        for entry in doc["artifacts"]:
            for r in entry["results"]:
                s = r["stats"]
                rss = "n/a" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
                t.add_row(
                    display_safe(entry["label"]), str(r["threads"]), f"{s['p50_ms']:.3f}", f"{s['p90_ms']:.3f}",
                    f"{s['p99_ms']:.3f}", f"{s['mean_ms']:.3f}", f"{s['throughput_ips']:.0f}", f"{r['cold_start_ms']:.1f}", rss,
                )
        console.print(t)
        from edgetl.bench.report import warnings as bench_warnings

        for warning in bench_warnings(doc):
            err_console.print(f"[bold yellow]warning:[/] {display_safe(warning)}", highlight=False)
        console.print(display_safe(f"wrote {written['json']}, {written['markdown'].name}, {written['html'].name}"), highlight=False)


# ----------------------------------------------------------------------------- compare
@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="The baseline: a bench.json from `edgetl bench` (A).", show_default=False)],
    b: Annotated[Path, typer.Argument(help="The bench.json to compare with it (B).", show_default=False)],
    threads: Annotated[int | None, typer.Option("--threads", help="Compare this thread count only.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """p50 latency of B relative to A per artifact and thread count, with a bootstrap 95% confidence interval."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.bench.harness import compare_benches, load_bench

        doc_a, doc_b = load_bench(a), load_bench(b)
        comparisons = compare_benches(doc_a, doc_b, threads=threads)
        if as_json:
            console.print_json(json.dumps({"a": str(a), "b": str(b), "comparisons": [c.to_dict() for c in comparisons]}))
            return
        console.print(f"A = {display_safe(a)}\nB = {display_safe(b)}", highlight=False)
        t = Table(title="p50 latency of B / A, bootstrap 95% confidence interval")
        t.add_column("artifact", no_wrap=True)
        for col in ("threads", "A p50 ms", "B p50 ms", "B/A [95% CI]"):
            t.add_column(col, justify="right", no_wrap=col == "B/A [95% CI]")
        t.add_column("verdict", no_wrap=True)
        for c in comparisons:
            name = c.artifact_a if c.artifact_a == c.artifact_b else f"{c.artifact_a} -> {c.artifact_b}"
            t.add_row(display_safe(name), str(c.threads), f"{c.p50_a_ms:.3f}", f"{c.p50_b_ms:.3f}", f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]", c.verdict)
        console.print(t)
        cpu_a, cpu_b = doc_a.get("machine", {}).get("cpu"), doc_b.get("machine", {}).get("cpu")
        if cpu_a != cpu_b:
            console.print(f"[yellow]note:[/] A ran on {cpu_a}, B on {cpu_b}: the ratio compares the machines too", highlight=False)


# ----------------------------------------------------------------------------- predict
@app.command()
def predict(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file with its labels and preprocessing (edgetl.json beside it, or embedded), or an edgetl build folder.", show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to list per image; more than the model has lists all of them, with a note.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
    trust_model: TrustModelOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Top-k labels and scores for image files, preprocessed as in training (.tflite/.onnx need no TensorFlow)."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.device.predict import predict_images

        report = predict_images(_model_file(artifact), images, top_k=top_k, trust_model=trust_model)
        if report.clamped:
            err_console.print(f"[yellow]note:[/] --top-k {report.requested_top_k} is more than the model's {len(report.class_names)} classes; listing all {report.top_k}", highlight=False)
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
            return
        t = Table(title=f"{display_safe(report.artifact)} ({report.kind}): top {report.top_k} of {len(report.class_names)} classes")
        for col, justify in (("image", "left"), ("rank", "right"), ("label", "left"), ("score", "right")):
            t.add_column(col, justify=justify, no_wrap=col == "image")
        for image, top in report.predictions:
            for rank, p in enumerate(top, 1):
                t.add_row(display_safe(image) if rank == 1 else "", str(rank), display_safe(p.label), f"{p.score:.4f}", end_section=rank == len(top))
        console.print(t)


# ----------------------------------------------------------------------------- inspect
@app.command("inspect")
def inspect_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file (anyone's), or an edgetl build folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Inputs/outputs, ops and parameters; XNNPACK delegation and TFLite Micro support (.tflite); opset, QDQ and int8 kernels in ONNX Runtime (.onnx)."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.device.inspect import inspect_artifact, render

        report = inspect_artifact(_model_file(artifact))
        if as_json:
            console.print_json(json.dumps(report))
            return
        for item in render(report):
            console.print(item, highlight=False)


# ----------------------------------------------------------------------------- package
@app.command("package")
def package_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file, or an edgetl build/export folder (the model its edgetl.json names).", show_default=False)],
    for_: Annotated[PackageFor, typer.Option("--for", help="c: C++ array, headers and op resolver for TFLite Micro (arena measured); android/ios: LiteRT assets and Kotlin/Swift code; python: model, labels and predict.py.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Package folder (default: package-<for> beside the model); replaced whole when complete.", show_default=False)] = None,
    ram_budget: Annotated[str | None, typer.Option("--ram-budget", help="c: fail when the measured tensor arena exceeds this: 256KB, 1MB or bytes (1 KB = 1024 bytes).", show_default=False)] = None,
    flash_budget: Annotated[str | None, typer.Option("--flash-budget", help="Fail when the model file exceeds this: 1MB, 512KB or bytes.", show_default=False)] = None,
    arena_margin: Annotated[str | None, typer.Option("--arena-margin", help="c: added to the measured arena: bytes (16KB) or a percentage (10%); default: the larger of 16 KiB and 10%.", show_default=False)] = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Bundle a model for an app: C for TFLite Micro (arena measured, outputs checked against LiteRT), Android, iOS or Python."""
    _setup_logging(verbose)
    with _errors_as_exit():
        from edgetl.core.units import human_size
        from edgetl.package.stage import package, resolve_artifact

        target = out if out is not None else resolve_artifact(artifact).parent / f"package-{for_.value}"
        with _output_lock(target), err_console.status(f"packaging {display_safe(artifact)} for {for_.value}"):  # seconds: a spinner, gone before any error line
            result = package(artifact, for_, target, ram_budget=ram_budget, flash_budget=flash_budget, arena_margin=arena_margin, force=force)
        report = result.report
        console.print(f"wrote the {for_.value} package of {display_safe(report['model']['file'])} ({human_size(report['model']['size_bytes'])}) to {display_safe(result.out_dir)}: {display_safe(', '.join(result.files))}", highlight=False)
        if "tflm" in report:
            arena, parity = report["tflm"]["arena"], report["tflm"]["parity"]
            console.print(
                f"tensor arena: measured [bold]{arena['measured_bytes']}[/] bytes ({human_size(arena['measured_bytes'])}) + margin {arena['margin_bytes']} "
                f"= kTensorArenaSize {arena['arena_bytes']} bytes ({human_size(arena['arena_bytes'])})", highlight=False,
            )
            ref, default = parity["against_litert_reference_kernels"], parity["against_litert_default_kernels"]
            console.print(
                f"TFLite Micro vs LiteRT reference kernels: {'identical' if ref['exact'] else str(ref['max_abs_diff_lsb']) + ' LSB'}; "
                f"vs LiteRT default kernels: max {default['max_abs_diff_lsb']} LSB, top-1 agreement {_pct(default['top1_agreement'])} "
                f"({len(ref['per_input_max_diff_lsb'])} inputs)", highlight=False,
            )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _handle_sigterm()
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="edgetl")
    except Terminated:  # before or after a command's own handling (argument parsing, imports)
        _stop_terminate_retry()
        err_console.print("[bold red]terminated (SIGTERM)[/]")
        sys.exit(143)



if __name__ == "__main__":  # pragma: no cover
    main()
