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
CHANNEL_ORDERS = ("RGB",)
LAYOUTS = ("NHWC",)
#: Inclusive bounds of ``input_size`` in metadata.
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
    """``model_input = (resize(rgb_pixels) - mean) / std``, channels last, batch first.

    Attributes:
        input_size: height and width the image is resized to.
        mean: per-channel value subtracted from 0..255 pixels.
        std: per-channel divisor applied after the mean.
        resize: PIL resampling filter used to resize (the whole image, no crop, no padding).
        channel_order: ``"RGB"``; images of other modes are converted to RGB first.
        layout: ``"NHWC"``.
    """

    input_size: int
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    resize: str = "bilinear"
    channel_order: str = "RGB"
    layout: str = "NHWC"
    pixel_range: tuple[int, int] = field(default=(0, 255))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Map uint8 pixels (N, H, W, 3) already at ``input_size`` to float32 model input."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (pixels.astype(np.float32) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """The contract as metadata (``edgetl.json``, embedded metadata): validated as a reader would.

        Raises:
            ArtifactError: a field a reader would refuse (see :meth:`from_dict`).
        """
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["pixel_range"] = list(self.pixel_range)
        data["formula"] = "(resize(rgb_uint8, input_size) - mean) / std"
        PreprocessContract.from_dict(data, source="the preprocessing contract being written")
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: object = "preprocessing metadata") -> PreprocessContract:
        """Read a contract from metadata, strictly: every field of the right type, length and range.

        ``resize`` is one of :data:`RESIZE_FILTERS` (case-insensitive), ``channel_order`` one of
        :data:`CHANNEL_ORDERS`, ``layout`` one of :data:`LAYOUTS`, ``input_size`` an integer in
        :data:`INPUT_SIZE_RANGE`, ``mean`` and ``std`` three finite numbers (std in
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
        if "input_size" not in data:
            raise refuse("input_size", None, f"an integer from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]}")
        size = data["input_size"]
        if not _is_int(size) or not INPUT_SIZE_RANGE[0] <= size <= INPUT_SIZE_RANGE[1]:
            raise refuse("input_size", size, f"an integer from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]}")

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
            raise refuse(missing, None, "a list of 3 finite numbers, one per RGB channel")
        mean = numbers("mean", None, 3, -MAX_ABS_MEAN, MAX_ABS_MEAN, f"a list of 3 finite numbers from {-MAX_ABS_MEAN:g} to {MAX_ABS_MEAN:g}, one per RGB channel")
        std = numbers("std", None, 3, MIN_STD, MAX_STD, f"a list of 3 finite numbers from {MIN_STD:g} to {MAX_STD:g} (nonzero, positive), one per RGB channel")
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
            input_size=int(size),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            resize=choice("resize", "bilinear", RESIZE_FILTERS, fold_case=True),
            channel_order=choice("channel_order", "RGB", CHANNEL_ORDERS),
            layout=choice("layout", "NHWC", LAYOUTS),
            pixel_range=PIXEL_RANGE,
        )


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
