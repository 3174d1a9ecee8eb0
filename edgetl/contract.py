"""The preprocessing contract: how raw pixels become the model's input, outside the graph.

The contract travels with every artifact (``edgetl.json``), so evaluation, benchmarking and
apps feed the model exactly what it saw in training. It needs numpy only, never TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["pixel_range"] = list(self.pixel_range)
        data["formula"] = "(resize(rgb_uint8, input_size) - mean) / std"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessContract:
        return cls(
            input_size=int(data["input_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            resize=str(data.get("resize", "bilinear")),
            channel_order=str(data.get("channel_order", "RGB")),
            layout=str(data.get("layout", "NHWC")),
            pixel_range=tuple(data.get("pixel_range", (0, 255))),  # type: ignore[arg-type]
        )
