"""edgetl: image folder -> fine-tuned, quantization-aware-trained edge model, measured.

The public Python API is :mod:`edgetl.api` (the module :mod:`edgetl.pipeline.api`), one function
per CLI command, each the very function the command calls::

    import edgetl

    result = edgetl.api.build(config)            # edgetl build
    artifact, meta = edgetl.api.export(run, "tflite-int8", data=images)
    report = edgetl.api.evaluate(artifact, images)
    doc, files = edgetl.api.bench([artifact], options, out)
    edgetl.api.package(artifact, "c")

``train``, ``qat``, ``export``, ``build``, ``evaluate``, ``bench`` and ``package`` are all there.
``edgetl.build``, ``edgetl.train``, ``edgetl.qat`` and ``edgetl.evaluate`` are the same functions;
``edgetl.export``, ``edgetl.bench`` and ``edgetl.package`` are not, because they name subpackages
(``edgetl/export/``, ...), and once a subpackage is imported Python binds the package attribute of
that name to the module, so a function could not stay there.

Everything is resolved lazily (module ``__getattr__``): ``import edgetl`` imports nothing else, and
TensorFlow is imported only when a function that needs it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Top-level names that resolve to the function of the same name in :mod:`edgetl.pipeline.api`.
_API_FUNCTIONS = ("build", "train", "qat", "evaluate")


def __getattr__(name: str) -> Any:
    if name == "api":
        return importlib.import_module("edgetl.pipeline.api")
    if name in _API_FUNCTIONS:
        return getattr(importlib.import_module("edgetl.pipeline.api"), name)
    raise AttributeError(f"module 'edgetl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "api", *_API_FUNCTIONS})
