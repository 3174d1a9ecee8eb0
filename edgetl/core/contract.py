"""The preprocessing contract: how raw pixels become the model's input, outside the graph.

The contract travels with every artifact (``edgetl.json``), so evaluation, benchmarking and
apps feed the model exactly what it saw in training. It needs numpy only, never TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError
from edgetl.core.text import CLASS_NAME_RULE, class_name_problem, shown

#: Resize filters a contract may name: the keys of :data:`edgetl.data.images.RESAMPLING` (a test keeps them equal).
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
#: Channel orders and their channel counts: ``"L"`` is Pillow's 8-bit grayscale (ITU-R 601-2 luma).
CHANNEL_ORDERS = ("RGB", "L")
CHANNELS = {"RGB": 3, "L": 1}
LAYOUTS = ("NHWC",)
#: Inclusive bounds of ``input_size`` (and of ``input_height``, ``input_width``) in metadata.
INPUT_SIZE_RANGE = (8, 4096)
PIXEL_RANGE = (0, 255)
#: Bounds of mean and std (0..255 pixels): a std below this would make the input overflow float32.
MAX_ABS_MEAN = 1e6
MIN_STD = 1e-6
MAX_STD = 1e6
MAX_CLASSES = 100_000
_FIX = "re-export the model with edgetl, or correct the file"


@dataclass(frozen=True)
class PreprocessContract:
    """``model_input = (resize(pixels, (width, height)) - mean) / std``, channels last, batch first.

    Square models keep ``input_size`` (what older artifacts and readers know); every contract also
    has ``input_height`` and ``input_width``. Build a non-square one with :meth:`sized`.

    Attributes:
        input_size: the side of a square input; None when height and width differ.
        mean: per-channel value subtracted from 0..255 pixels (one per channel).
        std: per-channel divisor applied after the mean.
        resize: PIL resampling filter used to resize (the whole image, no crop, no padding).
        channel_order: ``"RGB"`` or ``"L"`` (grayscale, Pillow's ITU-R 601-2 luma); images of other
            modes are converted to it first.
        layout: ``"NHWC"``.
        input_height, input_width: the model's input height and width (default: ``input_size``).
    """

    input_size: int | None
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)
    std: tuple[float, ...] = (127.5, 127.5, 127.5)
    resize: str = "bilinear"
    channel_order: str = "RGB"
    layout: str = "NHWC"
    pixel_range: tuple[int, int] = field(default=(0, 255))
    input_height: int | None = None
    input_width: int | None = None

    def __post_init__(self) -> None:
        height, width = self.input_height, self.input_width
        if height is None and width is None:
            if self.input_size is None:
                raise ValueError("a preprocessing contract needs input_size or input_height and input_width")
            height = width = self.input_size
        if height is None or width is None:
            raise ValueError("give both input_height and input_width")
        if self.input_size is not None and (height, width) != (self.input_size, self.input_size):
            raise ValueError(f"input_size {self.input_size} disagrees with input_height {height} and input_width {width}")
        object.__setattr__(self, "input_height", int(height))
        object.__setattr__(self, "input_width", int(width))
        object.__setattr__(self, "input_size", int(height) if height == width else None)

    @classmethod
    def sized(
        cls, hw: tuple[int, int] | int, mean: tuple[float, ...], std: tuple[float, ...], *, channel_order: str = "RGB", resize: str = "bilinear"
    ) -> PreprocessContract:
        """A contract for input ``hw`` = (height, width) (or a square side)."""
        height, width = as_hw(hw)
        return cls(None, tuple(mean), tuple(std), resize=resize, channel_order=channel_order, input_height=height, input_width=width)

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self.input_height, self.input_width  # type: ignore[return-value]

    @property
    def size_wh(self) -> tuple[int, int]:
        """``(width, height)``: what Pillow's ``Image.resize`` takes."""
        return self.input_width, self.input_height  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        """1 (``"L"``) or 3 (``"RGB"``; also for an order no reader accepts, which :meth:`to_dict` refuses)."""
        return CHANNELS.get(self.channel_order, 3)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one image."""
        return self.input_height, self.input_width, self.channels  # type: ignore[return-value]

    @property
    def size_text(self) -> str:
        """``"96 px"`` for a square input, ``"96x64 px"`` (width x height) otherwise, plus ``" grayscale"``."""
        size = f"{self.input_size} px" if self.input_size is not None else f"{self.input_width}x{self.input_height} px"
        return size + (" grayscale" if self.channels == 1 else "")

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Map uint8 pixels (N, H, W, C) already at the input size to float32 model input."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (pixels.astype(np.float32) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """The contract as metadata (``edgetl.json``, embedded metadata): validated as a reader would.

        Raises:
            ArtifactError: a field a reader would refuse (see :meth:`from_dict`).
        """
        data = asdict(self)
        if self.input_size is None:
            del data["input_size"]  # a non-square model: a reader that knows only input_size must refuse it
        data["channels"] = self.channels
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["pixel_range"] = list(self.pixel_range)
        pixels = "rgb_uint8" if self.channels == 3 else "gray_uint8"
        size = "input_size" if self.input_size is not None else "(input_width, input_height)"
        data["formula"] = f"(resize({pixels}, {size}) - mean) / std"
        PreprocessContract.from_dict(data, source="the preprocessing contract being written")
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: object = "preprocessing metadata") -> PreprocessContract:
        """Read a contract from metadata, strictly: every field of the right type, length and range.

        ``resize`` is one of :data:`RESIZE_FILTERS` (case-insensitive), ``channel_order`` one of
        :data:`CHANNEL_ORDERS`, ``layout`` one of :data:`LAYOUTS`, ``input_size`` (square) and/or
        ``input_height`` and ``input_width`` integers in :data:`INPUT_SIZE_RANGE` (old metadata has
        ``input_size`` only), ``channels`` (optional) the count ``channel_order`` implies, ``mean`` and
        ``std`` one finite number per channel (std in
        [:data:`MIN_STD`, :data:`MAX_STD`]), ``pixel_range`` ``[0, 255]``. Unknown keys are ignored.

        Args:
            data: the ``preprocessing`` mapping.
            source: what it was read from (a file, "x.tflite (embedded metadata)"), for the message.

        Raises:
            ArtifactError: one line naming ``source``, the field, the value received and what is allowed.
        """

        def refuse(name: str, value: object, allowed: str) -> ArtifactError:
            return ArtifactError(f"{source}: preprocessing {name} is {shown(value)}; allowed: {allowed}; {_FIX}")

        if not isinstance(data, dict):
            raise refuse("metadata", data, "a JSON object with input_size, mean, std, resize, channel_order, layout")
        size_rule = f"an integer from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]}"

        def side(name: str) -> int | None:
            value = data.get(name)
            if value is None and name not in data:
                return None
            if not _is_int(value) or not INPUT_SIZE_RANGE[0] <= value <= INPUT_SIZE_RANGE[1]:
                raise refuse(name, value, size_rule)
            return int(value)

        size, height, width = side("input_size"), side("input_height"), side("input_width")
        if (height is None) != (width is None):
            missing = "input_width" if width is None else "input_height"
            raise refuse(missing, None, f"{size_rule}, given with {'input_height' if width is None else 'input_width'}")
        if height is None:
            if size is None:
                raise refuse("input_size", None, f"{size_rule} (or input_height and input_width)")
            height = width = size
        elif size is not None and (height, width) != (size, size):
            raise refuse("input_size", size, f"absent, or equal to input_height {height} and input_width {width}")

        order = data.get("channel_order", "RGB")
        if not isinstance(order, str) or order not in CHANNEL_ORDERS:
            raise refuse("channel_order", order, "one of " + ", ".join(CHANNEL_ORDERS))
        count = CHANNELS[order]
        if "channels" in data and (not _is_int(data["channels"]) or data["channels"] != count):
            raise refuse("channels", data["channels"], f"{count} (channel_order {order})")
        per_channel = "one per RGB channel" if count == 3 else "one for the gray channel"

        def numbers(name: str, default: Any, count: int, low: float, high: float, what: str) -> tuple[float, ...]:
            value = data.get(name, default)
            if (
                not isinstance(value, list | tuple) or len(value) != count
                or not all(_is_number(v) and math.isfinite(v) and low <= v <= high for v in value)
            ):
                raise refuse(name, value, what)
            return tuple(float(v) for v in value)

        if "mean" not in data or "std" not in data:
            missing = "mean" if "mean" not in data else "std"
            raise refuse(missing, None, f"a list of {count} finite numbers, {per_channel}")
        mean = numbers("mean", None, count, -MAX_ABS_MEAN, MAX_ABS_MEAN, f"a list of {count} finite numbers from {-MAX_ABS_MEAN:g} to {MAX_ABS_MEAN:g}, {per_channel}")
        std = numbers("std", None, count, MIN_STD, MAX_STD, f"a list of {count} finite numbers from {MIN_STD:g} to {MAX_STD:g} (nonzero, positive), {per_channel}")
        pixel_range = data.get("pixel_range", list(PIXEL_RANGE))
        if not isinstance(pixel_range, list | tuple) or len(pixel_range) != 2 or not all(_is_int(v) for v in pixel_range) or tuple(pixel_range) != PIXEL_RANGE:
            raise refuse("pixel_range", pixel_range, f"{list(PIXEL_RANGE)} (8-bit pixels)")

        def choice(name: str, default: str, allowed: tuple[str, ...], *, fold_case: bool = False) -> str:
            value = data.get(name, default)
            key = value.lower() if fold_case and isinstance(value, str) and value.isascii() else value
            if not isinstance(key, str) or key not in allowed:
                raise refuse(name, value, "one of " + ", ".join(allowed))
            return key

        return cls(
            input_size=None,
            mean=mean,
            std=std,
            resize=choice("resize", "bilinear", RESIZE_FILTERS, fold_case=True),
            channel_order=order,
            layout=choice("layout", "NHWC", LAYOUTS),
            pixel_range=PIXEL_RANGE,
            input_height=height,
            input_width=width,
        )


def image_size_text(preprocessing: dict[str, Any]) -> str:
    """``"96x96"`` or ``"96x64"`` (width x height) from ``preprocessing`` metadata (written by :meth:`PreprocessContract.to_dict`)."""
    width = preprocessing.get("input_width", preprocessing.get("input_size"))
    height = preprocessing.get("input_height", preprocessing.get("input_size"))
    return f"{width}x{height}"


def as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(height, width)`` from a square side or an ``(height, width)`` pair."""
    if isinstance(size, tuple | list):
        height, width = size
        return int(height), int(width)
    return int(size), int(size)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_class_names(names: Any, *, source: object = "metadata") -> list[str]:
    """``names`` as a list of class names, checked: a non-empty list (at most :data:`MAX_CLASSES`) of
    unique names, each as :func:`edgetl.core.text.class_name_problem` allows.

    Raises:
        ArtifactError: one line naming ``source``, the offending name (repr, truncated) and the rule.
    """
    if not isinstance(names, list | tuple) or not names or len(names) > MAX_CLASSES:
        raise ArtifactError(f"{source}: class_names is {shown(names)}; allowed: a non-empty list of at most {MAX_CLASSES} class names; {_FIX}")
    for index, name in enumerate(names):
        problem = class_name_problem(name)
        if problem is not None:
            raise ArtifactError(f"{source}: class name {index} ({shown(name)}) {problem}; allowed: {CLASS_NAME_RULE}; {_FIX}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ArtifactError(f"{source}: class name {shown(name)} appears more than once; class names must be unique; {_FIX}")
        seen.add(name)
    return list(names)
