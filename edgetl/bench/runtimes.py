"""The runtimes ``edgetl bench`` drives: one :class:`RuntimeSpec` per runtime, looked up by name or file suffix.

Which runtime runs which file, its label and its version come from the one format registry,
:data:`edgetl.runtime.formats.FORMATS`; this module adds only what benchmarking needs of each
runtime (:data:`BENCH_EXTRAS`): how to open a profiled model, give it concrete input shapes and
rank its ops, and what the report says where a runtime offers no op profile. A format whose
runtime has no entry there is not benchmarked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.bench import board_runner as _runner
from edgetl.bench.board_runner import LITERT_OP_PROFILE_NOTE
from edgetl.core.errors import ConfigError
from edgetl.core.registry import Registry
from edgetl.runtime.formats import FORMATS, ArtifactFormat


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime the harness can drive: capabilities as data, behaviour as functions.

    Attributes:
        name: registry name (``--runtime``).
        label: how reports name it.
        suffixes: model file suffixes it runs; the first runtime listing a suffix is its default.
        open: ``open(path, threads, profile)`` -> a loaded model (``LiteRTModel``, ``ORTModel``).
        version: returns the version of the runtime's package.
        set_shapes: gives a loaded model concrete input shapes (None: the runtime takes them per run).
        top_ops: ``top_ops(model, n)`` of a model opened with ``profile=True``; None: no per-op profile.
        no_profile_note: what the report says when ``top_ops`` is None.
        provider: the execution provider or delegate, for models that do not report one.
    """

    name: str
    label: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, int | None, bool], Any]
    version: Callable[[], str]
    set_shapes: Callable[[Any, list[tuple[int, ...]]], None] | None = None
    top_ops: Callable[[Any, int], list[dict[str, Any]]] | None = None
    no_profile_note: str = ""
    provider: str = ""


#: What benchmarking adds to a runtime of :data:`edgetl.runtime.formats.FORMATS`, by runtime name:
#: ``profiles`` (its models open with ``profile=``) and the optional :class:`RuntimeSpec` fields.
BENCH_EXTRAS: dict[str, dict[str, Any]] = {
    "onnxruntime": {
        "profiles": True,
        "top_ops": lambda model, n: _runner.top_ops_from_profile(model.profile_events(), n),
    },
    "litert": {
        "set_shapes": lambda model, shapes: model.resize_inputs(shapes),
        "no_profile_note": LITERT_OP_PROFILE_NOTE,
        "provider": _runner.LITERT_PROVIDER,
    },
}


def _opener(fmt: ArtifactFormat, profiles: bool) -> Callable[[Path, int | None, bool], Any]:
    """``open(path, threads, profile)`` over the format's own ``open``; ``profile`` only where the runtime records one."""
    if profiles:
        return lambda path, threads, profile: fmt.open(path, num_threads=threads, profile=profile)
    return lambda path, threads, profile: fmt.open(path, num_threads=threads)


def _register_runtimes() -> Registry[RuntimeSpec]:
    registry: Registry[RuntimeSpec] = Registry("runtime")
    for _, fmt in FORMATS.items():
        if fmt.runtime is None or fmt.open is None or fmt.version is None or fmt.runtime not in BENCH_EXTRAS:
            continue
        extras = dict(BENCH_EXTRAS[fmt.runtime])
        profiles = extras.pop("profiles", False)
        registry.register(fmt.runtime, RuntimeSpec(
            fmt.runtime, fmt.runtime_label, fmt.suffixes, open=_opener(fmt, profiles), version=fmt.version, **extras,
        ))
    return registry


RUNTIMES = _register_runtimes()


def default_runtime(path: Path) -> RuntimeSpec:
    """The runtime a model file's suffix calls for.

    Raises:
        ConfigError: no registered runtime runs files with this suffix.
    """
    suffix = path.suffix.lower()
    for _, spec in RUNTIMES.items():
        if suffix in spec.suffixes:
            return spec
    known = ", ".join(sorted({s for _, spec in RUNTIMES.items() for s in spec.suffixes}))
    raise ConfigError(f"Received {path}: edgetl bench runs {known} files, not {suffix or 'files without a suffix'}")
