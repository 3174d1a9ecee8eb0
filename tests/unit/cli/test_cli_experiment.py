"""``edgetl experiment``: bad input is one line on stderr, before anything trains."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from tests.helpers import assert_one_line_error

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edgetl.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path_factory.mktemp("cli-exp") / "shapes", images_per_class=12, image_size=32, seed=0, shapes=("circle", "square"),
    )


def test_experiment_is_listed_with_both_commands():
    result = runner.invoke(app, ["experiment", "--help"])
    assert result.exit_code == 0 and "data-efficiency" in result.output and "unfreeze-depth" in result.output


@pytest.mark.parametrize("sizes", ["5,ten", "5,,10", "0"])
def test_per_class_not_numbers_is_one_line(tiny_data, tmp_path, sizes):
    result = runner.invoke(app, ["experiment", "data-efficiency", "--data", str(tiny_data), "--per-class", sizes, "--out", str(tmp_path / "o")])
    assert_one_line_error(result, "--per-class")
    assert not (tmp_path / "o").exists()


def test_depths_not_numbers_is_one_line(tiny_data, tmp_path):
    result = runner.invoke(app, ["experiment", "unfreeze-depth", "--data", str(tiny_data), "--depths", "0,deep", "--out", str(tmp_path / "o")])
    assert_one_line_error(result, "--depths", "'deep' is not a number")


def test_weights_none_is_one_line(tiny_data, tmp_path):
    result = runner.invoke(
        app, ["experiment", "data-efficiency", "--data", str(tiny_data), "--weights", "none", "--per-class", "3", "--out", str(tmp_path / "o")]
    )
    assert_one_line_error(result, "--weights none leaves nothing to transfer")


def test_depth_beyond_the_model_is_one_line(tiny_data, tmp_path):
    """The blocks are counted on the built backbone: a depth past them stops before any run trains."""
    from edgetl.ml.backbones import build_backbone
    from edgetl.ml.backbones.spec import BACKBONES

    weights = tmp_path / "w.weights.h5"
    build_backbone(BACKBONES.get("mobilenet_v2"), 32, 0.35, "none").model.save_weights(str(weights))
    out = tmp_path / "o"
    result = runner.invoke(app, [
        "experiment", "unfreeze-depth", "--data", str(tiny_data), "--model", "mobilenet_v2", "--alpha", "0.35", "--input-size", "32",
        "--weights", str(weights), "--depths", "0,1,40", "--out", str(out),
    ])
    assert_one_line_error(result, "--depths 40 is beyond mobilenet_v2", "blocks")
    assert not (out / "experiment.json").exists()
