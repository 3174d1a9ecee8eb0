"""Grayscale and non-square inputs in the preprocessing contract and the configuration."""

from __future__ import annotations

import pytest

from edgetl.core.config import ModelConfig, parse_input_size, validate
from edgetl.core.contract import PreprocessContract, image_size_text
from edgetl.core.errors import ArtifactError, ConfigError


def test_square_rgb_keeps_input_size_and_adds_explicit_fields():
    contract = PreprocessContract(96, (127.5,) * 3, (127.5,) * 3)
    data = contract.to_dict()
    assert data["input_size"] == 96
    assert (data["input_height"], data["input_width"], data["channels"], data["channel_order"]) == (96, 96, 3, "RGB")
    assert data["formula"] == "(resize(rgb_uint8, input_size) - mean) / std"
    assert contract.hw == (96, 96) and contract.input_shape == (96, 96, 3)
    assert PreprocessContract.from_dict(data) == contract


def test_non_square_gray_round_trip_has_no_input_size():
    contract = PreprocessContract.sized((64, 96), (127.5,), (127.5,), channel_order="L")
    data = contract.to_dict()
    assert "input_size" not in data
    assert (data["input_height"], data["input_width"], data["channels"], data["mean"]) == (64, 96, 1, [127.5])
    assert data["formula"] == "(resize(gray_uint8, (input_width, input_height)) - mean) / std"
    back = PreprocessContract.from_dict(data)
    assert back == contract
    assert back.input_size is None and back.hw == (64, 96) and back.size_wh == (96, 64) and back.input_shape == (64, 96, 1)
    assert image_size_text(data) == "96x64" and contract.size_text == "96x64 px grayscale"


def test_old_metadata_reads_as_square_rgb():
    old = {"input_size": 32, "mean": [127.5] * 3, "std": [127.5] * 3, "resize": "bilinear", "channel_order": "RGB", "layout": "NHWC"}
    contract = PreprocessContract.from_dict(old)
    assert contract.input_shape == (32, 32, 3) and contract.channels == 3
    assert image_size_text(old) == "32x32"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel_order": "L"}, "mean"),  # three means for one channel
        ({"channels": 1}, "channels"),  # disagrees with RGB
        ({"input_height": 32}, "input_width"),  # height without width
        ({"input_height": 32, "input_width": 40}, "input_size"),  # input_size 32 but 40 wide
        ({"channel_order": "BGR"}, "channel_order"),
        ({"input_width": 4, "input_height": 32}, "input_width"),  # below the range
    ],
)
def test_from_dict_is_strict(change, field):
    old = {"input_size": 32, "mean": [127.5] * 3, "std": [127.5] * 3}
    data = {**old, **change}
    with pytest.raises(ArtifactError, match=f"preprocessing {field} is"):
        PreprocessContract.from_dict(data, source="x.json")


@pytest.mark.parametrize(("value", "hw", "stored"), [(96, (96, 96), 96), ("96", (96, 96), 96), ("96x64", (64, 96), "96x64"), ("64X64", (64, 64), 64)])
def test_input_size_accepts_a_side_or_width_x_height(value, hw, stored):
    model = ModelConfig(input_size=value)
    assert model.input_hw == hw and model.input_size == stored
    assert parse_input_size(value) == hw


@pytest.mark.parametrize("value", ["96x", "x64", "96x64x3", "big", "8x64", "96x2000", -3, True, 1.5])
def test_bad_input_size_is_one_line_naming_the_flag(value):
    with pytest.raises(ConfigError) as error:
        validate({"model": {"input_size": value}}, "command line", {"model.input_size": "--input-size"})
    assert "--input-size" in str(error.value) and "WIDTHxHEIGHT" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", [2, 4, 0, "rgb", True, 3.0])
def test_bad_channels_names_the_flag(value):
    with pytest.raises(ConfigError, match="--channels .*1 \\(grayscale\\) or 3 \\(RGB\\)"):
        validate({"model": {"channels": value}}, "command line", {"model.channels": "--channels"})


def test_default_config_is_unchanged_square_rgb():
    config = validate({"model": {"input_size": 224}}, "edgetl.toml")
    assert config.model.channels == 3 and config.model.input_size == 224 and config.model.input_hw == (224, 224)
    assert validate({}, "edgetl.toml").model.input_hw is None
