"""``edgetl experiment data-efficiency`` and ``edgetl experiment unfreeze-depth``: the transfer-learning
FAQ (when does transfer pay, which layers to unfreeze) measured on the user's own images.

Each command parses its flags, builds a configuration and makes one call to
:mod:`edgetl.pipeline.experiment`; it prints the answer paragraph and where the JSON, plot and HTML
report went. A rerun with the same flags and ``--out`` resumes an interrupted experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetl.cli.console import RichProgress, console, setup_logging
from edgetl.cli.errors import errors_as_exit, requires_training_stack
from edgetl.cli.options import (
    AlphaOpt,
    BatchOpt,
    ConfigOpt,
    DataOpt,
    FineEpochsOpt,
    ForceOpt,
    HeadEpochsOpt,
    InputSizeOpt,
    SeedOpt,
    VerboseOpt,
    WeightsOpt,
    resolve,
    training_flags,
)
from edgetl.core.text import display_safe

experiment_app = typer.Typer(
    help="Answer the transfer-learning FAQ by measurement: does transfer beat training from scratch on your data, "
    "from how many images per class, and how deep to fine-tune.",
    no_args_is_help=True,
)

ValDataOpt = Annotated[Path | None, typer.Option("--val-data", help="Fixed validation folder (same classes); default: a split of --data made once with --seed.")]
ExpModelOpt = Annotated[str | None, typer.Option("--model", help="Backbone (see `edgetl backbones`), e.g. mobilenet_v2.")]
SeedsOpt = Annotated[int, typer.Option("--seeds", help="Runs per point, each with its own subset draw and initialisation (3+ gives a 95% interval).")]
PatienceOpt = Annotated[int | None, typer.Option("--patience", help="Early-stopping patience of phase 2 (default 3).")]


def _config(config: Path | None, data, val_data, model, weights, input_size, alpha, seed, batch_size, head_epochs, fine_tune_epochs, patience):
    flags = training_flags(
        data, model, input_size, alpha, weights, val_data, None, seed, batch_size, head_epochs, fine_tune_epochs, None, None, None, None,
        None, None, patience=patience,
    )
    return resolve(config, flags, {"data.val_path": "--val-data", **_FLAG_NAMES})


_FLAG_NAMES = {
    "data.path": "--data", "model.name": "--model", "model.input_size": "--input-size", "model.alpha": "--alpha",
    "model.weights": "--weights", "data.seed": "--seed", "data.batch_size": "--batch-size",
    "train.head_epochs": "--head-epochs", "train.fine_tune_epochs": "--fine-tune-epochs", "train.patience": "--patience",
}


def _print_result(result) -> None:
    console.print(result.answer, highlight=False, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    skipped = len(result.runs) - result.trained
    console.print(
        f"{result.trained} run(s) trained{f', {skipped} resumed from {RESULT_NAME}' if skipped else ''} in {result.seconds:.0f} s -> "
        f"{display_safe(result.json_path)}, {display_safe(result.png)}, {display_safe(result.html_path)}",
        highlight=False,
    )


RESULT_NAME = "experiment.json"


def data_efficiency(
    data: DataOpt = None,
    model: ExpModelOpt = None,
    val_data: ValDataOpt = None,
    weights: WeightsOpt = None,
    per_class: Annotated[str, typer.Option("--per-class", help="Training images per class to try, comma-separated; 'all': the whole training pool.")] = "5,10,20,50,all",
    seeds: SeedsOpt = 3,
    input_size: InputSizeOpt = None,
    alpha: AlphaOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for experiment.json, learning_curve.png and report.html; a rerun resumes it.")] = Path("runs/experiment-data-efficiency"),
    l2sp: Annotated[str | None, typer.Option("--l2sp", help="Also L2-SP fine-tuning with alpha[,beta], e.g. 0.01,0.001 (needs \\[train] l2sp).")] = None,
    scratch_epochs: Annotated[int | None, typer.Option("--scratch-epochs", help="Phase-2 epochs from scratch (default: max(--fine-tune-epochs, 30)).")] = None,
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    patience: PatienceOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Validation top-1 against images per class: from scratch, feature extraction, fine-tuning (and L2-SP)."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("experiment data-efficiency")
        from edgetl.pipeline import experiment  # numpy and pydantic; TensorFlow once the experiment starts

        sizes = experiment.parse_per_class(per_class)
        strengths = experiment.parse_l2sp(l2sp)
        cfg = _config(config, data, val_data, model, weights, input_size, alpha, seed, batch_size, head_epochs, fine_tune_epochs, patience)
        with RichProgress() as progress:
            result = experiment.data_efficiency(
                cfg, out, per_class=sizes, seeds=seeds, l2sp=strengths, scratch_epochs=scratch_epochs, force=force, progress=progress
            )
        _print_result(result)


def unfreeze_depth(
    data: DataOpt = None,
    model: ExpModelOpt = None,
    val_data: ValDataOpt = None,
    weights: WeightsOpt = None,
    depths: Annotated[str, typer.Option("--depths", help="Blocks unfrozen from the top to try, comma-separated; 0: feature extraction; 'all': every layer.")] = "0,1,2,3,4,all",
    seeds: SeedsOpt = 1,
    input_size: InputSizeOpt = None,
    alpha: AlphaOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for experiment.json, unfreeze_depth.png and report.html; a rerun resumes it.")] = Path("runs/experiment-unfreeze-depth"),
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    patience: PatienceOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Validation top-1 and training time against blocks unfrozen from the top, and the tutorial's first-N-layers choice."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("experiment unfreeze-depth")
        from edgetl.pipeline import experiment  # numpy and pydantic; TensorFlow once the experiment starts

        parsed = experiment.parse_depths(depths)
        cfg = _config(config, data, val_data, model, weights, input_size, alpha, seed, batch_size, head_epochs, fine_tune_epochs, patience)
        with RichProgress() as progress:
            result = experiment.unfreeze_depth(cfg, out, depths=parsed, seeds=seeds, force=force, progress=progress)
        _print_result(result)


experiment_app.command("data-efficiency")(data_efficiency)
experiment_app.command("unfreeze-depth")(unfreeze_depth)
