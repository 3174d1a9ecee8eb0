"""edgetl: image folder -> fine-tuned, quantization-aware-trained edge model, measured.

The public API mirrors the CLI; TensorFlow is imported only when a function that needs it runs.
"""

from __future__ import annotations

__version__ = "0.1.0"
