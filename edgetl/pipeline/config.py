"""Configuration files: the backbone recipes, the user's TOML and flags, layered and checked against :mod:`edgetl.core.config`.

Precedence, lowest first: built-in defaults, the backbone's recipe (``models/<name>.toml``),
the user's ``edgetl.toml``, then command-line flags. Unknown keys are errors (``extra="forbid"``).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from edgetl.core.config import BuildConfig, ModelConfig, validate
from edgetl.core.errors import ConfigError


def recipes_dir() -> Path:
    """Folder holding one TOML recipe per backbone (packaged, or the repo's ``models/``)."""
    package_root = Path(__file__).resolve().parent.parent
    packaged = package_root / "models"
    if packaged.is_dir():
        return packaged
    return package_root.parent / "models"


def read_toml(path: Path, what: str = "config") -> dict[str, Any]:
    """Read a TOML file, turning every failure into a one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist; pass an existing TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, merging nested tables."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def overrides_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"model.name": "x", "train.augment": None}`` into nested dicts, dropping Nones."""
    nested: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def resolve_config(
    config_path: Path | None = None, flags: dict[str, Any] | None = None, flag_names: dict[str, str] | None = None
) -> BuildConfig:
    """Combine defaults, the backbone recipe, the user's TOML and flags into a checked config.

    Args:
        config_path: the user's ``edgetl.toml``, or None.
        flags: dotted keys (``"model.name"``) to values; None values mean "not given".
        flag_names: dotted keys to the command-line flags that set them, so that a bad value is
            reported as ``--patience: ...`` rather than ``train.patience: ...``.

    Raises:
        ConfigError: malformed TOML, unknown keys, bad values, or an unknown backbone.
    """
    user = read_toml(config_path) if config_path is not None else {}
    if config_path is not None:
        validate(user, str(config_path))  # report the user's own mistakes against their file
    cli = overrides_from_flags(flags or {})
    if cli:
        validate(cli, "command line", flag_names)
    layered = deep_merge(user, cli)
    name = layered.get("model", {}).get("name", ModelConfig.model_fields["name"].default)

    from edgetl.ml.backbones.spec import BACKBONES  # light: no TensorFlow at import
    from edgetl.ml.user_model import check_model_file, is_model_path  # light: no TensorFlow at import

    if is_model_path(str(name)):  # --model FILE: the user's own Keras model, no recipe; opened when training starts
        check_model_file(str(name))
        spec, recipe = None, {}
    else:
        spec = BACKBONES.get(name)  # unknown backbone -> error listing the registered ones
        recipe_path = recipes_dir() / f"{name}.toml"
        recipe = read_toml(recipe_path, "recipe") if recipe_path.is_file() else {}
        validate(recipe, str(recipe_path))
    config = validate(deep_merge(recipe, layered), "configuration")
    if spec is not None and config.model.input_hw is not None:
        spec.check_input_size(config.model.input_hw)  # the backbone's own minimum, before any data is read
    if config.data.path is not None:
        config.data.path = Path(config.data.path)
    return config
