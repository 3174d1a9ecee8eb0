"""Configuration: precedence, recipes, unknown keys, malformed TOML."""

from __future__ import annotations

import pytest

from edgetl.core.errors import ConfigError
from edgetl.pipeline.config import recipes_dir, resolve_config


def test_recipe_then_toml_then_flags(tmp_path):
    toml = tmp_path / "edgetl.toml"
    toml.write_text('[model]\ninput_size = 160\nalpha = 0.5\n[train]\nhead_epochs = 7\n')
    config = resolve_config(toml, {"model.alpha": 0.75, "train.augment": None})
    recipe_default = resolve_config(None, {}).model.input_size
    assert recipe_default == 224  # from models/mobilenet_v2.toml
    assert config.model.input_size == 160  # TOML over recipe
    assert config.model.alpha == 0.75  # flag over TOML
    assert config.train.head_epochs == 7
    assert config.train.augment is True  # None flag means "not given"


def test_every_registered_backbone_has_a_recipe():
    from edgetl.ml.backbones.spec import BACKBONES

    for name in BACKBONES:
        assert (recipes_dir() / f"{name}.toml").is_file(), f"models/{name}.toml missing"
        resolve_config(None, {"model.name": name})


def test_unknown_key_is_named(tmp_path):
    toml = tmp_path / "edgetl.toml"
    toml.write_text("[train]\nepochz = 3\n")
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        resolve_config(toml, {})


def test_bad_value_is_named(tmp_path):
    toml = tmp_path / "edgetl.toml"
    toml.write_text('[data]\nval_split = 1.5\n')
    with pytest.raises(ConfigError, match=r"data\.val_split"):
        resolve_config(toml, {})


def test_malformed_toml(tmp_path):
    toml = tmp_path / "edgetl.toml"
    toml.write_text("[model\nname = 'x'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(toml, {})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(tmp_path / "nope.toml", {})


def test_unknown_backbone_lists_registered():
    from edgetl.ml.backbones.spec import BACKBONES

    with pytest.raises(ConfigError, match="unknown backbone 'resnet50'; known backbones: ") as excinfo:
        resolve_config(None, {"model.name": "resnet50"})
    for name in BACKBONES.names():
        assert name in str(excinfo.value)


def test_stage_fingerprints_separate_stages(tmp_path):
    from edgetl.core.fingerprint import stage_fingerprints

    base = resolve_config(None, {"data.path": str(tmp_path)})
    more_qat = resolve_config(None, {"data.path": str(tmp_path), "qat.epochs": 9})
    other_target = resolve_config(None, {"data.path": str(tmp_path), "target": "tflite-fp16"})
    a, b, c = stage_fingerprints(base), stage_fingerprints(more_qat), stage_fingerprints(other_target)
    assert a["train"] == b["train"] == c["train"]
    assert a["qat"] != b["qat"] and a["qat"] == c["qat"]
    assert a["export"] != c["export"]
    (tmp_path / "new.png").write_bytes(b"x")  # the images changed: retrain
    assert stage_fingerprints(base)["train"] != a["train"]


def test_the_stage_cache_key_follows_image_content_not_timestamps(tmp_path):
    import os

    from edgetl.core.fingerprint import stage_fingerprints

    (tmp_path / "cat").mkdir()
    image = tmp_path / "cat" / "a.png"
    image.write_bytes(b"first version")
    base = resolve_config(None, {"data.path": str(tmp_path)})
    before = stage_fingerprints(base)
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched: same bytes
    assert stage_fingerprints(base)["train"] == before["train"], "a touched image retrained"
    image.write_bytes(b"other version")  # same size, then the old timestamps put back
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert stage_fingerprints(base)["train"] != before["train"], "one changed image must retrain"
    # how the images are read (the decode cache, --no-cache) does not change what is trained
    no_decode_cache = resolve_config(None, {"data.path": str(tmp_path), "data.decode_cache": False})
    assert stage_fingerprints(no_decode_cache)["train"] == stage_fingerprints(base)["train"]
    mixed = resolve_config(None, {"data.path": str(tmp_path), "train.mixed_precision": True})
    assert stage_fingerprints(mixed)["train"] != stage_fingerprints(base)["train"], "mixed precision trains a different model"
