"""Run ``.onnx`` models with ONNX Runtime (CPU), without TensorFlow.

Like :mod:`edgetl.runtime.litert`, this module must import on a device that has only numpy
and onnxruntime: ``onnxruntime`` itself is imported inside the functions that need it, and the
``onnx`` package is used only by :func:`ort_fusion_report` (``edgetl inspect``; ``metadata_props``
come from the session's model metadata). A profiled session hands back ONNX Runtime's raw profile
events (:meth:`ORTModel.profile_events`); ranking them is the benchmark's business.

Session options are fixed for reproducible latency: ``intra_op_num_threads`` as asked,
one inter-op thread, sequential execution, and graph optimization level ``ORT_ENABLE_ALL``
by default (a QDQ int8 model fuses to QLinearConv only at EXTENDED or ALL; at BASIC it runs
in float; STACK.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.runtime.isolation import check_input_shape, probe_model
from edgetl.runtime.model import TensorInfo
from edgetl.runtime.ort_session import _dtype_name, create_session

logger = logging.getLogger(__name__)

_DEFAULT_PREDICT_BATCH = 32
#: ``optimization=`` names -> ``onnxruntime.GraphOptimizationLevel`` member names.
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


_ORT_ERROR_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*(Load model from .*? failed:\s*)?")


def _one_line(exc: BaseException) -> str:
    text = _ORT_ERROR_PREFIX.sub("", " ".join(str(exc).split()))
    return text[:300] + ("..." if len(text) > 300 else "")


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises for a model it cannot load or run."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type))


def _declared(shape: Any) -> tuple[int | str, ...]:
    """A declared ONNX shape: fixed sizes as ints, dynamic ones by their symbol (``"?"`` when unnamed)."""
    if shape is None:
        return ()
    return tuple(d if isinstance(d, int) and d >= 0 else (str(d) if isinstance(d, str) and d else "?") for d in shape)


def _tensor_info(arg: Any, index: int) -> TensorInfo:
    return TensorInfo(
        name=str(arg.name),
        shape=tuple(d if isinstance(d, int) else -1 for d in _declared(arg.shape)),
        dtype=_dtype_name(str(arg.type)),
        scale=0.0,
        zero_point=0,
        index=index,
    )


def check_model_file(path: Path) -> int:
    """Cheap checks before ONNX Runtime sees the file; returns its size in bytes.

    Raises:
        ArtifactError: the file is missing, not a regular file, or empty.
    """
    if not path.exists():
        raise ArtifactError(f"model file {path} does not exist")
    if not path.is_file():
        raise ArtifactError(f"model path {path} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ArtifactError(f"model file {path} is empty")
    return size


class ORTModel:
    """An ``.onnx`` model loaded into an ONNX Runtime CPU session.

    The interface mirrors :class:`~edgetl.runtime.litert.LiteRTModel`. Dynamic dimensions
    appear as ``-1`` in ``inputs[i].shape`` and by name in :attr:`declared_shapes`.

    Args:
        path: the ``.onnx`` file.
        num_threads: intra-op threads; None: ONNX Runtime's default (one per physical core).
        profile: record an ONNX Runtime profile of every run, read by :meth:`profile_events`.
        optimization: graph optimization level: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.

    Raises:
        ArtifactError: the file is missing, not an ONNX model, or ONNX Runtime cannot load it.
        ConfigError: ``num_threads`` is not a positive integer, or ``optimization`` is unknown.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        profile: bool = False,
        optimization: str = "all",
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"Received num_threads={num_threads!r}; pass a positive integer or None")
        if optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"Received optimization={optimization!r}; pass one of {', '.join(OPTIMIZATION_LEVELS)}")
        self.size_bytes = check_model_file(self.path)
        probe_model(self.path, runtime="onnxruntime")  # a model that crashes ONNX Runtime does so in a child, not here
        self.num_threads = num_threads
        self.optimization = optimization
        self.profile = profile
        self._profile_dir: str | None = None
        self._profile_events: list[dict[str, Any]] | None = None

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
        options.log_severity_level = 3  # errors only: the loader's warnings are not the user's business
        if profile:
            self._profile_dir = tempfile.mkdtemp(prefix="edgetl-ort-profile-")
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(self._profile_dir) / "profile")
        try:
            self._session = create_session(ort, str(self.path), options)
            self.inputs: list[TensorInfo] = [_tensor_info(a, i) for i, a in enumerate(self._session.get_inputs())]
            self.outputs: list[TensorInfo] = [_tensor_info(a, i) for i, a in enumerate(self._session.get_outputs())]
            self.declared_shapes: list[tuple[int | str, ...]] = [_declared(a.shape) for a in self._session.get_inputs()]
            self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        except (*_ort_errors(), UnicodeDecodeError) as exc:
            self._remove_profile_dir()
            message = _one_line(exc)
            if "protobuf" in message.lower():  # "Protobuf parsing failed", "No graph was found in the protobuf"
                raise ArtifactError(f"{self.path} is not an ONNX model, or it is corrupt or truncated ({message})") from None
            raise ArtifactError(f"ONNX Runtime cannot load {self.path}: {message}") from None
        self.provider = self._session.get_providers()[0]
        self.version = ort_version()
        logger.debug("loaded %s: inputs %s, outputs %s", self.path, self.inputs, self.outputs)

    # ------------------------------------------------------------------------------ running
    def invoke_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run raw input arrays (the model's own dtypes, shapes that fit its declared ones); return raw outputs.

        Raises:
            DataError: wrong number of arrays, or ONNX Runtime rejects their types or shapes.
            ArtifactError: ONNX Runtime fails while running the graph.
        """
        if len(inputs) != len(self.inputs):
            raise DataError(f"Received {len(inputs)} input arrays; {self.path} has {len(self.inputs)} inputs")
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        feed = {info.name: array for info, array in zip(self.inputs, inputs, strict=True)}
        try:
            return list(self._session.run(None, feed))
        except (state.InvalidArgument, TypeError, ValueError) as exc:
            raise DataError(f"{self.path} rejected the raw inputs: {_one_line(exc)}") from None
        except (*_ort_errors(), RuntimeError, MemoryError) as exc:
            raise ArtifactError(f"ONNX Runtime failed to run {self.path}: {_one_line(exc)}") from None

    def _to_input_dtype(self, x: np.ndarray, info: TensorInfo) -> np.ndarray:
        dtype = np.dtype(info.dtype)
        if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
            # No scale/zero point in an ONNX graph input: the values are taken as already in the
            # integer range (e.g. raw 0..255 pixels), rounded and clipped.
            limits = np.iinfo(dtype)
            return np.clip(np.rint(x), limits.min, limits.max).astype(dtype)
        return x.astype(dtype, copy=False)

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Run a batch of any size through a single-input, single-output model.

        Args:
            x: model input ``(N, ...)``, already preprocessed. A float input tensor is fed
                directly (cast to its dtype); an integer one gets ``x`` rounded and clipped to its range.
            batch_size: samples per run when the batch dimension is dynamic; None: ``min(N, 32)``.
                A fixed batch dimension is honoured (the last chunk is padded).

        Returns:
            float32 ``(N, ...)`` outputs (probabilities, for a classifier ending in softmax).

        Raises:
            DataError: ``x`` does not fit the model's input, or the model has several inputs/outputs.
        """
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise DataError(
                f"predict() needs a model with one input and one output, {self.path} has "
                f"{len(self.inputs)} and {len(self.outputs)}; use invoke_raw()"
            )
        info = self.inputs[0]
        x = np.asarray(x)
        expected = info.shape[1:]
        if (
            not info.shape
            or x.ndim != len(info.shape)
            or any(want >= 0 and want != got for want, got in zip(expected, x.shape[1:], strict=True))
        ):
            shown = ", ".join("?" if d < 0 else str(d) for d in expected)
            raise DataError(f"Received input of shape {tuple(x.shape)}; {self.path} expects (N, {shown})")
        if batch_size is not None and batch_size < 1:
            raise DataError(f"Received batch_size={batch_size}; pass a positive integer or None")
        n = x.shape[0]
        if n == 0:
            return np.empty((0, *(max(d, 0) for d in self.outputs[0].shape[1:])), dtype=np.float32)
        fixed = info.shape[0] if info.shape[0] >= 0 else None
        check_input_shape([fixed or 1, *x.shape[1:]], f"input {info.name!r} of {self.path}")
        batch = fixed or min(n, batch_size or _DEFAULT_PREDICT_BATCH)
        x = self.to_input(x)
        results = []
        for start in range(0, n, batch):
            chunk = x[start : start + batch]
            rows = chunk.shape[0]
            if fixed and rows < fixed:  # pad the last chunk to the model's fixed batch
                chunk = np.concatenate([chunk, np.zeros((fixed - rows, *chunk.shape[1:]), dtype=chunk.dtype)])
            (out,) = self.invoke_raw([chunk])
            results.append(np.asarray(out)[:rows])
        return self.from_output(np.concatenate(results))

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed input -> the first input's dtype (what :meth:`predict` feeds the session; a board gets the same arrays)."""
        return self._to_input_dtype(np.asarray(x), self.inputs[0])

    def from_output(self, out: np.ndarray) -> np.ndarray:
        """The first output's raw values -> float32, as :meth:`predict` returns them."""
        return np.asarray(out).astype(np.float32, copy=False)

    # ------------------------------------------------------------------------------ profiling
    def profile_events(self) -> list[dict[str, Any]]:
        """The ONNX Runtime profile of the runs so far (profiling stops at the first call).

        Returns:
            The profile's events as ONNX Runtime writes them (a Chrome trace: ``cat``, ``name``,
            ``dur`` in microseconds, ``args``); :func:`edgetl.bench.board_runner.top_ops_from_profile`
            ranks operators by them.

        Raises:
            ConfigError: the model was loaded without ``profile=True``.
        """
        if not self.profile:
            raise ConfigError(f"profile_events() needs a profiled session: load {self.path} with ORTModel(..., profile=True)")
        if self._profile_events is None:
            profile_file = self._session.end_profiling()
            try:
                self._profile_events = json.loads(Path(profile_file).read_text(encoding="utf-8")) if profile_file else []
            finally:
                self._remove_profile_dir()
        return self._profile_events

    def _remove_profile_dir(self) -> None:
        if self._profile_dir:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None

    def __del__(self) -> None:  # a profiled session abandoned before profile_events() leaves no temp folder
        try:
            if self._profile_dir and self._profile_events is None:
                self._session.end_profiling()
            self._remove_profile_dir()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "runtime": self.runtime,
            "runtime_version": self.version,
            "provider": self.provider,
            "num_threads": self.num_threads,
            "optimization": self.optimization,
            "inputs": [{**info.to_dict(), "declared_shape": list(d)} for info, d in zip(self.inputs, self.declared_shapes, strict=True)],
            "outputs": [info.to_dict() for info in self.outputs],
            "metadata": dict(self.metadata),
        }


def ort_fusion_report(path: Path) -> dict[str, Any]:
    """How ONNX Runtime (CPU, all graph optimizations) runs the model: its optimized op counts."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        create_session(ort, str(path), options)
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    ops = Counter(node.op_type for node in optimized.graph.node)
    source_ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    convs = source_ops.get("Conv", 0)
    return {
        "ops": dict(sorted(source_ops.items())),
        "ort_optimized_ops": dict(sorted(ops.items())),
        "convs": convs,
        "int8_convs": ops.get("QLinearConv", 0),
        "float_convs_after_optimization": ops.get("Conv", 0) + ops.get("FusedConv", 0),
    }
