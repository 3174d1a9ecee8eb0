"""``edgetl experiment``: the data-efficiency and unfreeze-depth experiments on a tiny generated
dataset (MobileNetV2 alpha 0.35 at 32 px, one epoch per phase), their files, resume, and the
statistics and answer text on hand-made numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgetl.core.errors import ConfigError
from edgetl.pipeline import experiment as exp
from edgetl.pipeline.experiment_report import mean_interval, t_975
from tests.helpers import TINY_SETTINGS, tiny_config

HOSTILE = "tri<b>angle<&>"


@pytest.fixture(scope="module")
def lab_data(tmp_path_factory) -> tuple[Path, Path]:
    """Three shape classes (one with markup in its name) and a weights file standing in for pretrained ones."""
    from edgetl.data.synthetic import make_shapes_dataset
    from edgetl.ml.backbones import build_backbone
    from edgetl.ml.backbones.spec import BACKBONES

    root = tmp_path_factory.mktemp("exp")
    data = make_shapes_dataset(
        root / "shapes", images_per_class=12, image_size=32, seed=0, shapes=("circle", "square", "triangle"),
        noise=0.05, min_scale=0.5, palette="light-on-dark",
    )
    (data / "triangle").rename(data / HOSTILE)
    weights = root / "pretrained.weights.h5"
    build_backbone(BACKBONES.get("mobilenet_v2"), 32, 0.35, "none").model.save_weights(str(weights))
    return data, weights


def _config(data: Path, weights: Path):
    from edgetl.core.config import validate
    from edgetl.pipeline.config import deep_merge

    return validate(deep_merge(TINY_SETTINGS, {
        "model": {"weights": str(weights)}, "data": {"path": str(data), "val_split": 0.25, "batch_size": 16, "min_images": 5},
        "train": {"head_epochs": 1, "fine_tune_epochs": 1, "patience": 1, "augment": False, "clean_epochs": 0},
    }), "test settings")


@pytest.fixture
def count_runs(monkeypatch) -> list[str]:
    """Every run the lab trains (the real training still happens): the resume test's counter."""
    from edgetl.ml.experiment import TransferLab

    calls: list[str] = []
    real = TransferLab.run

    def counted(self, method, *args, **kwargs):
        calls.append(method)
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(TransferLab, "run", counted)
    return calls


def test_feature_extraction_alone_writes_the_files_and_resumes(lab_data, tmp_path, count_runs):
    """The fast path (depth 0: the head on cached features): JSON, PNG, HTML, then a rerun that trains nothing."""
    data, weights = lab_data
    out = tmp_path / "fast"
    result = exp.unfreeze_depth(_config(data, weights), out, depths=[0], seeds=2)
    record = json.loads((out / "experiment.json").read_text())
    assert [run["key"] for run in record["runs"]] == ["features/0/0", "features/0/1"] and record["complete"] is True
    assert record["summary"]["fine_tune"]["0"]["n"] == 2 and not math.isnan(record["summary"]["fine_tune"]["0"]["half"])
    assert (out / "unfreeze_depth.png").read_bytes()[:4] == b"\x89PNG"
    assert "tri&lt;b&gt;angle&lt;&amp;&gt;" in (out / "report.html").read_text()
    assert result.trained == 2 and count_runs == ["features", "features"]

    again = exp.unfreeze_depth(_config(data, weights), out, depths=[0], seeds=2)
    assert again.trained == 0 and len(count_runs) == 2 and again.answer == result.answer
    with pytest.raises(ConfigError, match="other settings .*seeds"):
        exp.unfreeze_depth(_config(data, weights), out, depths=[0], seeds=3)


@pytest.mark.slow
def test_data_efficiency_writes_json_plot_report_and_resumes(lab_data, tmp_path, count_runs):
    data, weights = lab_data
    cfg = _config(data, weights)
    out = tmp_path / "de"
    result = exp.data_efficiency(cfg, out, per_class=[3], seeds=1, scratch_epochs=1)

    record = json.loads((out / "experiment.json").read_text())
    assert record["complete"] is True and record["experiment"] == "data-efficiency"
    assert record["settings"]["per_class"] == ["3"] and record["settings"]["seeds"] == 1
    assert sorted(run["method"] for run in record["runs"]) == ["features", "fine_tune", "scratch"]
    for run in record["runs"]:
        assert set(run) >= {"method", "per_class", "seed", "top1", "balanced_accuracy", "seconds"}
        assert 0.0 <= run["top1"] <= 1.0 and run["seconds"] > 0 and run["train_images"] == 9  # 3 per class, 3 classes
    assert record["classes"] == sorted(["circle", "square", HOSTILE])
    assert {run["trainable_layers"] for run in record["runs"] if run["method"] == "features"} == {0}
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<b>angle" not in page and "tri&lt;b&gt;angle&lt;&amp;&gt;" in page
    assert result.answer and result.answer == record["answer"] and result.trained == 3
    assert list(out.glob("cache/features-*.npy")), "the backbone features were not cached"
    assert len(count_runs) == 3

    again = exp.data_efficiency(cfg, out, per_class=[3], seeds=1, scratch_epochs=1)
    assert again.trained == 0 and len(count_runs) == 3, "a rerun with the same settings trained again"
    assert len(json.loads((out / "experiment.json").read_text())["runs"]) == 3

    with pytest.raises(ConfigError, match="other settings .*per_class"):
        exp.data_efficiency(cfg, out, per_class=[3, 4], seeds=1, scratch_epochs=1)


@pytest.mark.slow
def test_unfreeze_depth_and_the_tutorials_first_layers(lab_data, tmp_path, count_runs):
    data, weights = lab_data
    out = tmp_path / "depth"
    result = exp.unfreeze_depth(_config(data, weights), out, depths=[0, 1], seeds=1)

    record = json.loads((out / "experiment.json").read_text())
    assert record["experiment"] == "unfreeze-depth" and record["complete"] is True
    by_key = {run["key"]: run for run in record["runs"]}
    assert set(by_key) == {"features/0/0", "fine_tune/1/0", "first_layers/first/0"}
    top_layers = record["layers_unfrozen"]["1"]
    assert record["layers_unfrozen"]["0"] == 0 and 0 < top_layers < record["backbone_layers"]
    # the tutorial's choice trains as many layers from the input as depth 1 does from the top
    assert record["first_layers"] == {"count": top_layers, "as_depth": "1"}
    assert by_key["fine_tune/1/0"]["trainable_layers"] > 0 and by_key["first_layers/first/0"]["trainable_layers"] > 0
    assert (out / "unfreeze_depth.png").stat().st_size > 1000 and (out / "report.html").exists()
    assert "first" in result.answer and len(count_runs) == 3

    with pytest.raises(ConfigError, match="beyond mobilenet_v2"):
        exp.unfreeze_depth(_config(data, weights), tmp_path / "too-deep", depths=[0, 99], seeds=1)


def test_weights_none_is_refused_before_training(lab_data, tmp_path):
    data, _ = lab_data
    with pytest.raises(ConfigError, match="nothing to transfer"):
        exp.data_efficiency(tiny_config(data), tmp_path / "none", per_class=[3], seeds=1)


@pytest.mark.parametrize("text", ["5,x", "", "5,,10", "0", "-3", "1.5", "５"])
def test_per_class_must_be_whole_numbers(text):
    with pytest.raises(ConfigError, match="--per-class"):
        exp.parse_per_class(text)


def test_parsing_sorts_and_keeps_all_last():
    assert exp.parse_per_class("20, 5,all,5") == [5, 20, None]
    assert exp.parse_depths("all,2,0") == [0, 2, "all"]
    assert exp.parse_l2sp("0.01,0.001") == [0.01, 0.001]
    with pytest.raises(ConfigError, match="--depths"):
        exp.parse_depths("1,two")
    with pytest.raises(ConfigError, match="--l2sp"):
        exp.parse_l2sp("nan")


def test_interval_uses_student_t():
    assert t_975(2) == pytest.approx(4.303) and t_975(1000) == pytest.approx(1.96)
    stat = mean_interval([0.5, 0.6, 0.7])
    assert stat["mean"] == pytest.approx(0.6)
    assert stat["half"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(mean_interval([0.5])["half"])


def _stat(mean: float, half: float = 0.02, n: int = 3) -> dict:
    return {"mean": mean, "half": half, "low": mean - half, "high": mean + half, "n": n}


def test_answer_says_where_transfer_wins_and_when_scratch_catches_up():
    labels = ["5", "20", "all"]
    summary = {
        "scratch": {"5": _stat(0.40), "20": _stat(0.60), "all": _stat(0.88)},
        "features": {"5": _stat(0.70), "20": _stat(0.75), "all": _stat(0.80)},
        "fine_tune": {"5": _stat(0.72), "20": _stat(0.85), "all": _stat(0.90)},
    }
    answer = exp.data_efficiency_answer(summary, labels)
    assert "widest gap is at 5 images per class" in answer and "+32.0 points" in answer
    assert "catches up" in answer and "from all images per class" in answer

    summary["scratch"]["all"] = _stat(0.50)
    assert "does not catch up within the sizes tried" in exp.data_efficiency_answer(summary, labels)
