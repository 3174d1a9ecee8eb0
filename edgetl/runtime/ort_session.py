"""The ONNX Runtime session every edgetl caller opens: options, the exact-int8 setting, dtype names.

Shared by the model wrapper (:mod:`edgetl.runtime.onnxruntime`) and the crash probe
(:mod:`edgetl.runtime.isolation`), which must open a model exactly as the wrapper will; kept apart
from both so neither imports the other. ``onnxruntime`` itself is passed in, never imported here.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: ONNX Runtime's ``tensor(<type>)`` names -> numpy dtype names.
_ORT_DTYPES = {
    "float": "float32",
    "float16": "float16",
    "double": "float64",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "bool": "bool",
}


#: Session config entry that makes ONNX Runtime compute int8 exactly on x86 CPUs without VNNI:
#: there its default U8S8 kernels add pairs of products in saturating 16-bit arithmetic, and an
#: edgetl int8 model agreed with LiteRT on only 30-40% of top-1 predictions (AMD EPYC, AVX2, no
#: VNNI). With it, ORT uses U8U8 kernels on such CPUs only; VNNI and ARM CPUs are unaffected.
PRECISE_INT8_ON_X86 = ("session.x64quantprecision", "1")


def create_session(ort: Any, model: str | bytes, options: Any) -> Any:
    """``ort.InferenceSession`` on the CPU provider with :data:`PRECISE_INT8_ON_X86` set.

    ORT's rewrite behind that option fails on a model whose weight zero points share one
    initializer (ONNX files from other tools, or edgetl's before it gave each its own); such a
    model is opened without it, with a warning that int8 results on this CPU may saturate.
    """
    options.add_session_config_entry(*PRECISE_INT8_ON_X86)
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT's pybind errors share no public base class
        if "replace the existing tensor" not in str(exc):
            raise
    logger.warning(
        "ONNX Runtime cannot use its exact int8 kernels for this model (shared weight zero points); on x86 CPUs "
        "without VNNI its int8 results may saturate. Re-export the model with edgetl to fix this."
    )
    options.add_session_config_entry(PRECISE_INT8_ON_X86[0], "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _dtype_name(ort_type: str) -> str:
    """``"tensor(float)"`` -> ``"float32"``; types numpy cannot hold keep ONNX's name (``"bfloat16"``)."""
    inner = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") and ort_type.endswith(")") else ort_type
    return _ORT_DTYPES.get(inner, inner)
