"""The configuration schema: one pydantic model per stage, combined into :class:`BuildConfig`.

Unknown keys are errors (``extra="forbid"``) and every number has bounds. Reading TOML files,
recipes and flags, and layering them, is :mod:`edgetl.pipeline.config`.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgetl.core.errors import ConfigError
from edgetl.core.types import ClassWeights, IODType, LRSchedule, Optimizer, PackageFor, QuantMode, Strategy
from edgetl.core.units import parse_margin, parse_size

#: Upper bounds that keep a typo (10**13 epochs, 10**12 runs) from being accepted and running for ever.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
MAX_EPOCHS = 10_000
MAX_LR = 10.0
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding and tf_keras' set_random_seed take 32-bit seeds
MAX_BATCH_SIZE = 4096
MAX_REPRESENTATIVE_SAMPLES = 100_000
MAX_BENCH_WARMUP = 100_000
MAX_BENCH_RUNS = 1_000_000
MAX_THREADS = 1024
MAX_NAME_LENGTH = 100
#: Training refuses a class with fewer images (``data.min_images``); the same number as
#: ``edgetl data check --strict`` (``edgetl.data.folder.STRICT_MIN_IMAGES``, a test keeps them equal).
MIN_IMAGES_PER_CLASS = 10


def path_component_problem(value: str) -> str | None:
    """Why ``value`` is not a safe single folder name (None: it is one)."""
    if not value:
        return "is empty"
    if value in (".", ".."):
        return f"is {value!r}, which names a folder other than its own"
    if "/" in value or "\\" in value:
        return "contains a path separator (/ or \\)"
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        return f"contains control or formatting character(s) {', '.join(f'U+{ord(c):04X}' for c in dict.fromkeys(bad))}"
    if value[0] in ".-":
        return f"starts with {value[0]!r} (hidden, or read as an option by other tools)"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long (at most {MAX_NAME_LENGTH})"
    return None


def check_path_component(value: str, key: str) -> str:
    """``value`` if it is a single, plain folder name, else a one-line :class:`ConfigError`."""
    problem = path_component_problem(value)
    if problem is not None:
        raise ConfigError(
            f"{key} {value!r} {problem}; a name must be one plain folder name: letters, digits, spaces, '_', '-' and '.' "
            f"(not first), at most {MAX_NAME_LENGTH} characters"
        )
    return value


def _lr(default: float | None, description: str | None = None) -> Any:
    """A learning rate: finite, > 0 and <= MAX_LR."""
    return Field(default, gt=0, le=MAX_LR, allow_inf_nan=False, description=description)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field("mobilenet_v2", description="registered backbone name, or a Keras model file (.keras/.h5) to fine-tune")
    alpha: float | None = Field(None, description="width multiplier (MobileNet); None: the recipe's")
    input_size: int | str | None = Field(
        None, description=f"input size in pixels: a side (square, {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}) or 'WxH' (width x height, e.g. '96x64'); None: the recipe's",
        json_schema_extra={"allowed": f"{MIN_INPUT_SIZE} <= value <= {MAX_INPUT_SIZE:,}, or 'WIDTHxHEIGHT' with both sides in that range"},
    )
    channels: int = Field(3, description="input channels: 3 (RGB) or 1 (grayscale, for small microcontrollers)")
    weights: str = Field("imagenet", description="'imagenet', 'none' or a path to a weights file")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    head_units: list[int] = Field(
        default_factory=list,
        description="widths of hidden Dense+ReLU layers between the pooling and the softmax (e.g. [1024]); []: pooling, dropout, softmax",
        json_schema_extra={"allowed": "a list of at most 8 integers from 1 to 65536"},
    )

    @field_validator("input_size", mode="before")
    @classmethod
    def _input_size(cls, value: Any) -> int | str | None:
        if value is None:
            return None
        height, width = parse_input_size(value)
        return height if height == width else f"{width}x{height}"

    @field_validator("head_units", mode="before")
    @classmethod
    def _head_units(cls, value: Any) -> list[int]:
        # bounds keep a typo (10**9 units) from building a head that cannot fit in memory
        if (
            not isinstance(value, list | tuple) or len(value) > 8
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in value)
        ):
            raise ValueError("head_units must list hidden-layer widths, e.g. [1024], or be [] for none")
        return [int(v) for v in value]

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> int:
        if isinstance(value, bool) or value not in (1, 3) or isinstance(value, float):
            raise ValueError("channels must be 1 (grayscale) or 3 (RGB)")
        return int(value)

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """``(height, width)`` of the input size, or None (the recipe's)."""
        return None if self.input_size is None else parse_input_size(self.input_size)


#: L2-SP's head weight decay when only alpha is given (Li et al. 2018; see ``edgetl.ml.l2sp``).
L2SP_DEFAULT_BETA = 0.01
MAX_L2SP = 1000.0


def parse_l2sp(value: Any) -> tuple[float, float] | None:
    """``(alpha, beta)`` from ``0.01``, ``"0.01,0.001"`` or ``[0.01, 0.001]`` (beta default
    :data:`L2SP_DEFAULT_BETA`); None stays None.

    Raises:
        ValueError: anything else, or a value that is negative, not finite or over :data:`MAX_L2SP`.
    """
    rule = "l2sp must be ALPHA or ALPHA,BETA, e.g. 0.01 or 0.01,0.001"
    if value is None:
        return None
    if isinstance(value, str):
        parts: list[Any] = [p.strip() for p in value.split(",")]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = [value]
    if not 1 <= len(parts) <= 2:
        raise ValueError(rule)
    numbers = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | float | str):
            raise ValueError(rule)
        try:
            number = float(part)
        except ValueError:
            raise ValueError(rule) from None
        if not 0.0 <= number <= MAX_L2SP:  # also refuses nan and inf
            raise ValueError(rule)
        numbers.append(number)
    return (numbers[0], numbers[1] if len(numbers) == 2 else L2SP_DEFAULT_BETA)


def parse_input_size(value: Any) -> tuple[int, int]:
    """``(height, width)`` from an input size: an integer side, or ``"WxH"`` (width x height, like an image size).

    Raises:
        ValueError: anything else, or a side outside ``MIN_INPUT_SIZE..MAX_INPUT_SIZE`` (pydantic reports it by flag).
    """
    rule = "one side in pixels (square, e.g. 96) or WIDTHxHEIGHT (e.g. 96x64)"
    if isinstance(value, int) and not isinstance(value, bool):
        sides = (value, value)
    elif isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        sides = (int(value.strip()),) * 2
    elif isinstance(value, str) and value.count("x") + value.count("X") == 1:
        width, height = (part.strip() for part in value.lower().split("x"))
        if not (width.isdecimal() and height.isdecimal() and width.isascii() and height.isascii()):
            raise ValueError(f"input size must be {rule}")
        sides = (int(height), int(width))
    else:
        raise ValueError(f"input size must be {rule}")
    if not all(MIN_INPUT_SIZE <= side <= MAX_INPUT_SIZE for side in sides):
        raise ValueError(f"input size must be {rule}")
    return sides


class DataConfig(_Section):
    path: Path | None = Field(None, description="image folder, one subfolder per class")
    val_path: Path | None = Field(None, description="separate validation folder (same classes)")
    val_split: float = Field(0.2, gt=0.0, lt=1.0, description="fraction held out when val_path is unset")
    seed: int = Field(42, ge=0, le=MAX_SEED, description="seed of the split, shuffles, augmentation, initialisation and calibration sampling (0 to 2**32-1)")
    strict: bool = Field(False, description="fail on unreadable files instead of skipping them")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE)
    max_image_pixels: int | None = Field(
        None, ge=1, le=10**10,
        description="images with more pixels (width x height) are skipped as unreadable; None: $EDGETL_MAX_IMAGE_PIXELS, else 64,000,000",
    )
    min_images: int = Field(
        MIN_IMAGES_PER_CLASS, ge=1, le=10**9,
        description="training refuses a class with fewer readable images (a wrong --data folder, a forgotten class)",
    )
    decode_cache: bool = Field(
        True, description="decode each image once into a memory-mapped cache under $EDGETL_CACHE_DIR (default ~/.cache/edgetl)",
    )


class TrainConfig(_Section):
    head_epochs: int = Field(5, ge=0, le=MAX_EPOCHS, description="phase 1: head on the frozen backbone")
    head_lr: float = _lr(1e-3)
    head_augment: bool = Field(False, description="augment in phase 1 (off: train on cached features)")
    fine_tune_epochs: int = Field(10, ge=0, le=MAX_EPOCHS, description="phase 2: top layers unfrozen")
    fine_tune_lr: float | None = _lr(None, "None: head_lr / 10 (pretrained) or head_lr (from scratch)")
    unfreeze: int | None = Field(None, ge=0, description="number of top backbone layers to unfreeze")
    unfreeze_from: str | None = Field(None, description="unfreeze from this layer name to the top")
    unfreeze_blocks: int | None = Field(None, ge=1, description="number of top backbone blocks to unfreeze")
    augment: bool = Field(True, description="light augmentation in phase 2")
    clean_epochs: int = Field(
        3, ge=0, le=MAX_EPOCHS,
        description="phase 3, after an augmented phase 2: epochs on the images as they are, BatchNorm in inference mode "
        "(the conditions QAT fine-tunes in), kept only if validation loss improves; 0: off",
    )
    clean_lr: float | None = _lr(None, "phase 3 learning rate; None: the phase 2 rate / 10")
    patience: int = Field(3, ge=1, le=MAX_EPOCHS, description="early stopping patience on validation loss")
    schedule: LRSchedule = Field(
        LRSchedule.plateau,
        description="phase 2 learning rate: 'plateau' (x0.3 when validation loss stalls for patience/2 epochs) or "
        "'cosine' (annealed to 1/100 over fine_tune_epochs)",
    )
    head_optimizer: Optimizer = Field(
        Optimizer.adam, description="phase 1 optimizer: 'adam', 'rmsprop' or 'sgd' (momentum 0.9)",
    )
    fine_tune_optimizer: Optimizer = Field(
        Optimizer.adam, description="phase 2 and 3 optimizer: 'adam', 'rmsprop' or 'sgd' (momentum 0.9; give it a low fine_tune_lr)",
    )
    class_weights: ClassWeights = Field(
        ClassWeights.none,
        description="'balanced': weight each class's loss by inverse frequency (imbalanced data); 'none': every image counts the same",
    )
    deterministic: bool = Field(
        False,
        description="TensorFlow op determinism: the same seed gives the same weights, metrics and model bytes (slower); "
        "off: results vary from run to run",
    )

    strategy: Strategy = Field(
        Strategy.auto,
        description="'auto' (MirroredStrategy over several GPUs, else one device), 'one', 'mirrored' or 'multiworker' "
        "(MultiWorkerMirroredStrategy from TF_CONFIG; the chief writes every file); batch_size is per replica",
    )
    mixed_precision: bool = Field(
        False,
        description="mixed_float16 compute with a float32 head, softmax and loss scaling (GPUs with tensor cores); QAT and "
        "the saved model stay float32",
    )
    jit: bool = Field(False, description="compile training steps with XLA (jit_compile)")

    l2sp: tuple[float, float] | None = Field(
        None,
        description="L2-SP in phases 2 and 3: (alpha, beta), alpha/2*||w - w_pretrained||^2 on the backbone's trainable weights + "
        "beta/2*||w||^2 on the head's; 0.01, '0.01,0.001' or [0.01, 0.001] (beta default 0.01); None: off",
        json_schema_extra={"allowed": "ALPHA or ALPHA,BETA (or a list of one or two numbers), each 0 <= value <= 1000"},
    )

    _l2sp = field_validator("l2sp", mode="before")(lambda cls, value: parse_l2sp(value))

    @model_validator(mode="after")
    def _one_depth_option(self) -> TrainConfig:
        given = [f"--{n.replace('_', '-')}" for n in ("unfreeze", "unfreeze_from", "unfreeze_blocks") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of --unfreeze, --unfreeze-from and --unfreeze-blocks (received {' and '.join(given)})")
        return self


class QATConfig(_Section):
    mode: QuantMode = QuantMode.qat
    epochs: int = Field(3, ge=0, le=MAX_EPOCHS)
    lr: float = _lr(1e-4)
    l2sp: tuple[float, float] | None = Field(
        None,
        description="L2-SP in QAT: alpha/2*||w - w_float||^2 on every trainable weight, anchored on the float model QAT starts from "
        "(beta unused: QAT adds no layer); same forms as [train] l2sp; None: off",
        json_schema_extra={"allowed": "ALPHA or ALPHA,BETA (or a list of one or two numbers), each 0 <= value <= 1000"},
    )

    _l2sp = field_validator("l2sp", mode="before")(lambda cls, value: parse_l2sp(value))


class ExportConfig(_Section):
    io_dtype: IODType = Field(IODType.int8, description="int8 models' input/output dtype")
    representative_samples: int = Field(200, ge=1, le=MAX_REPRESENTATIVE_SAMPLES, description="training images used to calibrate")
    compare_ptq: bool = Field(True, description="QAT int8 builds also export PTQ int8 from the float model, for the report")
    companion: bool = Field(True, description="int8 builds write both model.tflite and model.onnx (same int8 scales) and report both")
    opset: int = Field(17, ge=13, le=18, description="ONNX opset of onnx-* targets")


class BenchConfig(_Section):
    warmup: int = Field(10, ge=0, le=MAX_BENCH_WARMUP)
    runs: int = Field(50, ge=1, le=MAX_BENCH_RUNS)
    threads: list[int] | None = Field(None, description="None: 1 and all cores")

    @field_validator("threads")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 1 <= t <= MAX_THREADS for t in value)):
            raise ValueError(f"threads must be a non-empty list of integers from 1 to {MAX_THREADS}")
        return value

    @property
    def resolved_threads(self) -> list[int]:
        if self.threads:
            return list(self.threads)
        cores = os.cpu_count() or 1
        return [1] if cores == 1 else [1, cores]


def checked_size(value: str | None) -> str | None:
    """A byte budget as given (256KB, 1MB or bytes), checked: pydantic reports the ``ValueError`` by field."""
    if value is not None:
        try:
            parse_size(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


class PackageConfig(_Section):
    """App bundles ``build`` writes into ``<target>/package-<for>/`` (see :mod:`edgetl.package.stage`)."""

    targets: list[PackageFor] = Field(default_factory=list, description="c, android, ios and/or python; empty: no package")
    ram_budget: str | None = Field(None, description="c: fail when the measured tensor arena exceeds it (256KB, 1MB or bytes; 1 KB = 1024 bytes)")
    flash_budget: str | None = Field(None, description="fail when the model file exceeds it (same units)")
    arena_margin: str | None = Field(None, description="c: added to the measured arena: bytes (16KB) or a percentage (10%); default: the larger of 16 KiB and 10%")

    @field_validator("ram_budget", "flash_budget")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        return checked_size(value)

    @field_validator("arena_margin")
    @classmethod
    def _margin(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_margin(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class LadderConfig(_Section):
    """``build --target auto``: the budgets the quantization ladder chooses under (see :mod:`edgetl.pipeline.ladder`)."""

    max_drop: float | None = Field(None, ge=0.0, le=100.0, allow_inf_nan=False, description="held-out top-1 points the shipped variant may lose against the float model")
    budget_ms: float | None = Field(None, gt=0.0, le=3_600_000.0, allow_inf_nan=False, description="p50 latency on the board, in milliseconds; None: no latency budget")
    ram_budget: str | None = Field(None, description="TFLite Micro tensor arena (256KB, 1MB or bytes; 1 KB = 1024 bytes); None: no RAM budget")
    flash_budget: str | None = Field(None, description="model file size (same units); None: no flash budget")
    on: str | None = Field(None, description="where to measure: local (default), ssh://user@host[:port] or arm64-emulated")
    threads: list[int] | None = Field(None, description="thread counts to time; None: 1 and the board's cores")
    variants: list[str] | None = Field(None, description="the rungs to try, by name (fp32, int8-ptq, int8-qat, ...); None: every rung")
    # Where the work runs and how the board is reached: not part of what the ladder chooses (left out of its fingerprint).
    workers: int = Field(1, ge=1, le=256, description="make the conversion variants on this many local worker processes (dask); 1: here")
    cluster: str | None = Field(None, description="make them on a dask cluster instead: the scheduler's tcp://host:8786")
    identity: Path | None = Field(None, description="--on ssh://: private key to log in with (default: ssh-agent and ~/.ssh/id_*)")
    known_hosts: Path | None = Field(None, description="--on ssh://: known_hosts file to check the board's host key against")
    remote_python: str | None = Field(None, description="--on ssh://: the board's Python (default python3)")

    @field_validator("ram_budget", "flash_budget")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        return checked_size(value)

    @field_validator("threads")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 1 <= t <= MAX_THREADS for t in value)):
            raise ValueError(f"threads must be a non-empty list of integers from 1 to {MAX_THREADS}")
        return value


class BuildConfig(_Section):
    name: str | None = Field(None, description="build name (one folder name under out); None: the data folder's name")
    out: Path = Field(Path("build"), description="root of build output folders")
    target: str = Field("tflite-int8", description="export target")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    qat: QATConfig = Field(default_factory=QATConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)
    ladder: LadderConfig | None = Field(None, description="--target auto only: the quantization ladder's budgets; None: off")

    @field_validator("name")
    @classmethod
    def _single_folder_name(cls, value: str | None) -> str | None:
        if value is not None:
            problem = path_component_problem(value)
            if problem is not None:
                raise ValueError(f"the build name {problem}; pass one plain folder name (at most {MAX_NAME_LENGTH} characters)")
        return value

    def to_toml_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON/TOML-friendly data (None values dropped)."""
        return self.model_dump(mode="json", exclude_none=True)


def _allowed_range(loc: tuple[Any, ...]) -> str | None:
    """``"0 < value <= 10"`` for the numeric field at ``loc`` of :class:`BuildConfig` (None: no bounds)."""
    model: Any = BuildConfig
    field = None
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            break
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
    if field is None:
        return None
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("allowed"), str):
        return extra["allowed"]
    low = high = None
    for item in field.metadata:
        if isinstance(item, Ge | Gt):
            low = f"{item.ge} <=" if isinstance(item, Ge) else f"{item.gt} <"
        elif isinstance(item, Le | Lt):
            high = f"<= {item.le:,}" if isinstance(item, Le) else f"< {item.lt:,}"
    if low is None and high is None:
        return None
    return " ".join(p for p in (low, "value", high) if p)


def format_validation_error(exc: ValidationError, source: str, names: dict[str, str] | None = None) -> str:
    """One line naming every bad key, what was received and what is allowed,
    e.g. ``edgetl.toml: train.head_lr: Input should be a finite number (got inf; allowed: 0 < value <= 10.0)``.
    ``names`` maps dotted keys to what the user wrote instead (``{"train.patience": "--patience"}``):
    the key is then shown as ``--patience (train.patience)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if names and loc in names:
            loc = f"{names[loc]} ({loc})"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key")
        else:
            allowed = _allowed_range(tuple(err["loc"])) if err["type"] not in ("missing",) else None
            got = repr(err.get("input"))
            if len(got) > 80:
                got = got[:77] + "..."
            msg = " ".join(str(err["msg"]).split())  # one line, whatever the validator wrote
            msg = msg.removeprefix("Value error, ")  # pydantic's prefix for a validator's own ValueError
            parts.append(f"{loc}: {msg} (got {got}{f'; allowed: {allowed}' if allowed else ''})")
    return f"{source}: " + "; ".join(parts)


def validate(data: dict[str, Any], source: str, names: dict[str, str] | None = None) -> BuildConfig:
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, names)) from None
