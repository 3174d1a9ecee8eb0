"""Issue 12, findings 5 (second half) and 13: diverged training is refused before anything is
written or converted, seeds are bounded, and ``--deterministic`` makes runs repeat exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetl.core.errors import ConfigError
from tests.helpers import TINY_SETTINGS, assert_one_line_error
from tests.helpers import run_cli as run

#: As small as training gets: two epochs per phase, augmentation on (its random ops are seeded too).
QUICK = {"train": {"head_epochs": 2, "fine_tune_epochs": 2, "augment": True, "clean_epochs": 1, "patience": 2}}


def tiny_config(shapes_dir, **sections):
    """conftest's tiny settings with ``sections`` merged in (a ``data`` section too)."""
    from edgetl.core.config import validate
    from edgetl.pipeline.config import deep_merge

    return validate(deep_merge(deep_merge(TINY_SETTINGS, {"data": {"path": str(shapes_dir)}}), sections), "test settings")


def _with(config, section: str, **values):
    """``config`` with ``values`` set without validation: the config now refuses 1e30 learning
    rates, so this is how a diverging rate still reaches training here."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=values)})


@pytest.mark.parametrize("seed", [2**63 - 1, -1, 2**32])
def test_seed_out_of_range_is_one_line_error(seed, shapes_dir):
    result = run("build", "--data", shapes_dir, "--seed", str(seed), "--dry-run")
    assert_one_line_error(result, "seed", str(seed))


def test_seed_bounds_in_config(shapes_dir):
    assert tiny_config(shapes_dir, data={"seed": 2**32 - 1}).data.seed == 2**32 - 1
    with pytest.raises(ConfigError, match="seed"):
        tiny_config(shapes_dir, data={"seed": 2**32})


def test_deterministic_flag_reaches_the_config(shapes_dir):
    result = run("build", "--data", shapes_dir, "--deterministic", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train"]["deterministic"] is True
    assert tiny_config(shapes_dir).train.deterministic is False


def test_diverged_training_is_refused_before_anything_is_written(shapes_dir, tmp_path):
    """A non-finite learning rate (``head_lr = inf`` ran 287 s, then failed in the converter) is
    caught after phase 1 with one clear error, and no model file is written."""
    from edgetl.ml.train import train

    config = _with(tiny_config(shapes_dir, train={"head_epochs": 1, "fine_tune_epochs": 0}), "train", head_lr=float("inf"))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"training diverged: \d+ of \d+ weights are NaN/inf after phase 1 \(head\) \(head_lr=inf\)") as info:
        train(config, out)
    assert "\n" not in str(info.value) and "lower the learning rates" in str(info.value)
    assert not (out / "model.keras").exists() and not (out / "edgetl.json").exists()


@pytest.mark.slow  # a from-scratch phase 2 epoch: ~40 s on 2 busy cores
def test_huge_learning_rate_diverges_in_phase_2_and_is_refused(shapes_dir, tmp_path):
    """The issue's case: ``head_lr = 1e30`` (from scratch, phase 2 trains at it too) made build segfault in TFLite export."""
    from edgetl.ml.train import train

    config = _with(tiny_config(shapes_dir, train={"head_epochs": 0, "fine_tune_epochs": 1}), "train", head_lr=1e30)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"weights are NaN/inf after phase 2 \(fine-tune\) \(fine_tune_lr=1e\+30\)"):
        train(config, out)
    assert not (out / "model.keras").exists()


@pytest.mark.slow  # quantizing and one QAT epoch: ~30 s idle, a minute on busy cores
def test_diverged_qat_is_refused_before_anything_is_written(trained_run, shapes_dir, tmp_path):
    from edgetl.ml.qat import qat
    from edgetl.pipeline.build import _clone

    config = _with(tiny_config(shapes_dir, qat={"epochs": 1}), "qat", lr=float("inf"))
    out = tmp_path / "qat"
    with pytest.raises(ConfigError, match=r"weights are NaN/inf after QAT \(qat.lr=inf\)"):
        qat(config, _clone(trained_run.model), class_names=trained_run.class_names, contract=trained_run.contract, split=trained_run.split, out_dir=out)
    assert not (out / "qat_model.h5").exists()


def _train_twice(shapes_dir, tmp_path, **sections):
    from edgetl.ml.train import train

    config = tiny_config(shapes_dir, **sections)
    return [train(config, tmp_path / f"run{i}") for i in range(2)]


def test_deterministic_phase_1_repeats_bit_for_bit(shapes_dir, tmp_path):
    """Same seed + deterministic: phase 1 through the whole frozen model with augmentation
    (seeded initialisation, shuffles and random augmentation ops) gives identical weights and history."""
    from tensorflow.python.framework import config as tf_config

    first, second = _train_twice(
        shapes_dir, tmp_path, train={"head_epochs": 1, "head_augment": True, "fine_tune_epochs": 0, "deterministic": True}, data={"seed": 7}
    )
    assert first.history == second.history and first.val_accuracy == second.val_accuracy
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert json.loads((first.out_dir / "edgetl.json").read_text())["deterministic"] is True
    assert not tf_config.is_op_determinism_enabled()  # the process-wide switch is put back


@pytest.mark.slow  # two trainings (all three phases) and two int8 conversions: minutes on 2 cores
def test_deterministic_train_and_export_give_identical_tflite_bytes(shapes_dir, tmp_path):
    """Phases 1-3 with augmentation, then PTQ int8 export: identical history, accuracy and model.tflite bytes."""
    from edgetl.pipeline.api import export_model

    runs = _train_twice(shapes_dir, tmp_path, train={**QUICK["train"], "deterministic": True}, data={"seed": 7})
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    files, top1 = [], []
    for i, result in enumerate(runs):
        artifact, meta = export_model(result.out_dir, "tflite-int8", data=shapes_dir, out=tmp_path / f"int8-{i}", samples=16)
        files.append(artifact.read_bytes())
        top1.append(meta["accuracy"]["artifact_top1"])
    assert runs[0].history == runs[1].history and top1[0] == top1[1]
    assert files[0] == files[1]
