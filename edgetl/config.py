"""Configuration: one pydantic model per stage, combined into :class:`BuildConfig`.

Precedence, lowest first: built-in defaults, the backbone's recipe (``models/<name>.toml``),
the user's ``edgetl.toml``, then command-line flags. Unknown keys are errors (``extra="forbid"``).
"""

from __future__ import annotations

import copy
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgetl.errors import ConfigError


class QuantMode(StrEnum):
    """How the int8 model gets its quantization ranges."""

    qat = "qat"
    ptq = "ptq"


class IODType(StrEnum):
    """dtype of a full-integer model's input and output tensors."""

    int8 = "int8"
    uint8 = "uint8"


class LRSchedule(StrEnum):
    """Phase 2's learning-rate schedule."""

    plateau = "plateau"  # x0.3 whenever validation loss stalls for patience/2 epochs
    cosine = "cosine"  # annealed from fine_tune_lr to 1/100 of it over fine_tune_epochs


class PackageFor(StrEnum):
    """What ``edgetl package`` bundles a model for."""

    c = "c"
    android = "android"
    ios = "ios"
    python = "python"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field("mobilenet_v2", description="registered backbone name")
    alpha: float | None = Field(None, description="width multiplier (MobileNet); None: the recipe's")
    input_size: int | None = Field(None, description="square input size in pixels; None: the recipe's")
    weights: str = Field("imagenet", description="'imagenet', 'none' or a path to a weights file")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)


class DataConfig(_Section):
    path: Path | None = Field(None, description="image folder, one subfolder per class")
    val_path: Path | None = Field(None, description="separate validation folder (same classes)")
    val_split: float = Field(0.2, gt=0.0, lt=1.0, description="fraction held out when val_path is unset")
    seed: int = 42
    strict: bool = Field(False, description="fail on unreadable files instead of skipping them")
    batch_size: int = Field(32, ge=1)


class TrainConfig(_Section):
    head_epochs: int = Field(5, ge=0, description="phase 1: head on the frozen backbone")
    head_lr: float = Field(1e-3, gt=0)
    head_augment: bool = Field(False, description="augment in phase 1 (off: train on cached features)")
    fine_tune_epochs: int = Field(10, ge=0, description="phase 2: top layers unfrozen")
    fine_tune_lr: float | None = Field(None, gt=0, description="None: head_lr / 10 (pretrained) or head_lr (from scratch)")
    unfreeze: int | None = Field(None, ge=0, description="number of top backbone layers to unfreeze")
    unfreeze_from: str | None = Field(None, description="unfreeze from this layer name to the top")
    unfreeze_blocks: int | None = Field(None, ge=1, description="number of top backbone blocks to unfreeze")
    augment: bool = Field(True, description="light augmentation in phase 2")
    clean_epochs: int = Field(
        3, ge=0,
        description="phase 3, after an augmented phase 2: epochs on the images as they are, BatchNorm in inference mode "
        "(the conditions QAT fine-tunes in), kept only if validation loss improves; 0: off",
    )
    clean_lr: float | None = Field(None, gt=0, description="phase 3 learning rate; None: the phase 2 rate / 10")
    patience: int = Field(3, ge=1, description="early stopping patience on validation loss")
    schedule: LRSchedule = Field(
        LRSchedule.plateau,
        description="phase 2 learning rate: 'plateau' (x0.3 when validation loss stalls for patience/2 epochs) or "
        "'cosine' (annealed to 1/100 over fine_tune_epochs)",
    )

    @model_validator(mode="after")
    def _one_depth_option(self) -> TrainConfig:
        given = [f"--{n.replace('_', '-')}" for n in ("unfreeze", "unfreeze_from", "unfreeze_blocks") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of --unfreeze, --unfreeze-from and --unfreeze-blocks (received {' and '.join(given)})")
        return self


class QATConfig(_Section):
    mode: QuantMode = QuantMode.qat
    epochs: int = Field(3, ge=0)
    lr: float = Field(1e-4, gt=0)


class ExportConfig(_Section):
    io_dtype: IODType = Field(IODType.int8, description="int8 models' input/output dtype")
    representative_samples: int = Field(200, ge=1, description="training images used to calibrate")
    compare_ptq: bool = Field(True, description="QAT int8 builds also export PTQ int8 from the float model, for the report")
    companion: bool = Field(True, description="int8 builds write both model.tflite and model.onnx (same int8 scales) and report both")
    opset: int = Field(17, ge=13, le=18, description="ONNX opset of onnx-* targets")


class BenchConfig(_Section):
    warmup: int = Field(10, ge=0)
    runs: int = Field(50, ge=1)
    threads: list[int] | None = Field(None, description="None: 1 and all cores")

    @field_validator("threads")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(t < 1 for t in value)):
            raise ValueError("threads must be a non-empty list of positive integers")
        return value

    @property
    def resolved_threads(self) -> list[int]:
        if self.threads:
            return list(self.threads)
        cores = os.cpu_count() or 1
        return [1] if cores == 1 else [1, cores]


class PackageConfig(_Section):
    """App bundles ``build`` writes into ``<target>/package-<for>/`` (see :mod:`edgetl.package`)."""

    targets: list[PackageFor] = Field(default_factory=list, description="c, android, ios and/or python; empty: no package")
    ram_budget: str | None = Field(None, description="c: fail when the measured tensor arena exceeds it (256KB, 1MB or bytes; 1 KB = 1024 bytes)")
    flash_budget: str | None = Field(None, description="fail when the model file exceeds it (same units)")
    arena_margin: str | None = Field(None, description="c: added to the measured arena: bytes (16KB) or a percentage (10%); default: the larger of 16 KiB and 10%")

    @field_validator("ram_budget", "flash_budget")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            from edgetl.package import parse_size

            try:
                parse_size(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("arena_margin")
    @classmethod
    def _margin(cls, value: str | None) -> str | None:
        if value is not None:
            from edgetl.package import parse_margin

            try:
                parse_margin(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class BuildConfig(_Section):
    name: str | None = Field(None, description="build name; None: the data folder's name")
    out: Path = Field(Path("build"), description="root of build output folders")
    target: str = Field("tflite-int8", description="export target")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    qat: QATConfig = Field(default_factory=QATConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)

    def to_toml_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON/TOML-friendly data (None values dropped)."""
        return self.model_dump(mode="json", exclude_none=True)


def recipes_dir() -> Path:
    """Folder holding one TOML recipe per backbone (packaged, or the repo's ``models/``)."""
    packaged = Path(__file__).parent / "models"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "models"


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


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming every bad key, e.g. ``edgetl.toml: train.epochs: unknown key``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return f"{source}: " + "; ".join(parts)


def validate(data: dict[str, Any], source: str) -> BuildConfig:
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def resolve_config(config_path: Path | None = None, flags: dict[str, Any] | None = None) -> BuildConfig:
    """Combine defaults, the backbone recipe, the user's TOML and flags into a checked config.

    Args:
        config_path: the user's ``edgetl.toml``, or None.
        flags: dotted keys (``"model.name"``) to values; None values mean "not given".

    Raises:
        ConfigError: malformed TOML, unknown keys, bad values, or an unknown backbone.
    """
    user = read_toml(config_path) if config_path is not None else {}
    if config_path is not None:
        validate(user, str(config_path))  # report the user's own mistakes against their file
    cli = overrides_from_flags(flags or {})
    if cli:
        validate(cli, "command line")
    layered = deep_merge(user, cli)
    name = layered.get("model", {}).get("name", ModelConfig.model_fields["name"].default)

    from edgetl.backbones import BACKBONES  # light: no TensorFlow at import

    BACKBONES.get(name)  # unknown backbone -> error listing the registered ones
    recipe_path = recipes_dir() / f"{name}.toml"
    recipe = read_toml(recipe_path, "recipe") if recipe_path.is_file() else {}
    validate(recipe, str(recipe_path))
    config = validate(deep_merge(recipe, layered), "configuration")
    if config.data.path is not None:
        config.data.path = Path(config.data.path)
    return config
