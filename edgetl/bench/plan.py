"""Plan a benchmark: check and load each artifact once, resolve its input shapes, before any measurement.

:func:`plan_artifact` turns a model file into an :class:`ArtifactPlan` (runtime, size, inputs with
concrete shapes, outputs, metadata): a missing or corrupt file, a ``--runtime`` that cannot run
it, an unresolved dynamic dimension or an input type that cannot be synthesised fails here.
:func:`plan_isolated` runs it in a child process (a model that crashes the runtime ends the child,
not edgetl), and :func:`plan_bench` plans every artifact of a run, with short unique labels
(:func:`artifact_labels`) for the reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.board_runner import synthetic_input
from edgetl.bench.options import BenchOptions
from edgetl.bench.runtimes import RUNTIMES, RuntimeSpec, default_runtime
from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.runtime.isolation import check_input_shape


# ----------------------------------------------------------------------------- input shapes
def _shape_text(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def resolve_input_shapes(
    names: Sequence[str],
    declared: Sequence[Sequence[int | str]],
    *,
    shapes: dict[str, tuple[int, ...]],
    batch: int | None,
    artifact: str,
) -> list[tuple[int, ...]]:
    """Concrete shapes for every input: declared fixed sizes, ``--shape`` values, and ``--batch``.

    A dynamic dimension (a symbol, ``"?"``) is taken from ``shapes[name]`` when given; otherwise
    a dynamic first dimension is the batch (``batch``, default 1); any other dynamic dimension
    is an error that names the input and its declared shape.

    Raises:
        ConfigError: an unknown input name in ``shapes``, a shape that contradicts the declared
            one, a fixed batch dimension that differs from ``batch``, or an unresolved dimension.
        ArtifactError: an absurd shape (a dimension above 2^20 or more than 2^31 elements).
    """
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ConfigError(
            f"--shape names input {unknown[0]!r}, but {artifact} has input(s) {', '.join(repr(n) for n in names) or 'none'}"
        )
    resolved = []
    for name, dims in zip(names, declared, strict=True):
        dims = tuple(dims)
        if name in shapes:
            given = shapes[name]
            given_text = "x".join(map(str, given))
            if len(given) != len(dims):
                raise ConfigError(
                    f"--shape {name}={given_text} has {len(given)} dimensions; input {name!r} of {artifact} "
                    f"is declared {_shape_text(dims)} ({len(dims)} dimensions)"
                )
            for i, (want, got) in enumerate(zip(dims, given, strict=True)):
                if isinstance(want, int) and want != got:
                    raise ConfigError(
                        f"--shape {name}={given_text} does not fit input {name!r} of {artifact}: "
                        f"it is declared {_shape_text(dims)}, dimension {i} is fixed at {want}"
                    )
            resolved.append(tuple(given))
            continue
        shape = list(dims)
        if shape and not isinstance(shape[0], int):
            shape[0] = batch or 1
        elif shape and batch is not None and shape[0] != batch:
            raise ConfigError(
                f"--batch {batch} does not fit input {name!r} of {artifact}: it is declared {_shape_text(dims)}, "
                f"with a fixed batch of {shape[0]}"
            )
        open_dims = [str(d) for d in shape if not isinstance(d, int)]
        if open_dims:
            example = "x".join(str(d) if isinstance(d, int) else f"<{d}>" for d in shape)
            raise ConfigError(
                f"input {name!r} of {artifact} is declared {_shape_text(dims)}: dynamic dimension(s) "
                f"{', '.join(open_dims)} need a size; pass --shape {name}={example} with numbers"
            )
        resolved.append(tuple(int(d) for d in shape))
    for name, shape in zip(names, resolved, strict=True):  # before anything is allocated for them
        check_input_shape(shape, f"input {name!r} of {artifact}")
    return resolved


_SYNTHESISABLE = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool")


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class ArtifactPlan:
    """One artifact, checked and loaded once in this process, ready to measure."""

    path: Path
    label: str
    runtime: RuntimeSpec
    size_bytes: int
    inputs: list[dict[str, Any]]  # name, dtype, declared_shape, shape (resolved)
    outputs: list[dict[str, Any]]
    metadata: dict[str, str]

    @property
    def shapes(self) -> list[list[int]]:
        return [list(i["shape"]) for i in self.inputs]

    @property
    def batch(self) -> int:
        """Inferences per call, for throughput: the first dimension of the first input."""
        first = self.inputs[0]["shape"] if self.inputs else []
        return max(int(first[0]), 1) if first else 1


def artifact_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the file name, with as many parent folders as it takes to tell them apart."""
    parts = [Path(p).parts for p in paths]
    depth = {i: 1 for i in range(len(paths))}
    while True:
        labels = ["/".join(p[-depth[i] :]) for i, p in enumerate(parts)]
        clashes = {i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])}
        if not clashes:
            return labels
        for i in clashes:
            depth[i] += 1


def plan_artifact(path: Path, label: str, options: BenchOptions, *, multi: bool = False) -> ArtifactPlan:
    """Cheap checks, then load the model once here and run it once with its synthetic inputs.

    Everything that can be wrong with an artifact (missing, wrong suffix, corrupt, unresolved
    shapes, unsupported input types) fails here, before any measurement starts.

    Args:
        multi: one of several artifacts: ``options.shapes`` entries naming none of this
            artifact's inputs are skipped instead of refused.

    Raises:
        ArtifactError, ConfigError, DataError.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"model file {path} does not exist")
    if not path.is_file():
        raise ArtifactError(f"model path {path} is not a regular file")
    by_suffix = default_runtime(path)
    runtime = RUNTIMES.get(options.runtime) if options.runtime else by_suffix
    if path.suffix.lower() not in runtime.suffixes:
        raise ConfigError(
            f"--runtime {runtime.name} cannot run {path}: it runs {', '.join(runtime.suffixes)} files; "
            f"{path.suffix} files run in {by_suffix.name}"
        )
    model = runtime.open(path, None, False)
    declared = list(model.declared_shapes)
    names = [info.name for info in model.inputs]
    # With several artifacts a --shape may name an input of only some of them; run_bench checks
    # that each names an input of at least one.
    given = {name: shape for name, shape in options.shapes.items() if name in names} if multi else options.shapes
    shapes = resolve_input_shapes(names, declared, shapes=given, batch=options.batch, artifact=str(path))
    for info, decl in zip(model.inputs, declared, strict=True):
        if info.dtype not in _SYNTHESISABLE:
            raise ConfigError(
                f"input {info.name!r} of {path} has type {info.dtype} (declared {_shape_text(decl)}); "
                "edgetl bench synthesises numeric and boolean inputs only"
            )
    if runtime.set_shapes is not None:
        runtime.set_shapes(model, shapes)
    rng = np.random.default_rng(options.seed)
    data = [synthetic_input(shape, info.dtype, rng) for shape, info in zip(shapes, model.inputs, strict=True)]
    model.invoke_raw(data)  # fail here, not in the middle of a run of measurements
    return ArtifactPlan(
        path=path,
        label=label,
        runtime=runtime,
        size_bytes=int(path.stat().st_size),
        inputs=[
            {"name": info.name, "dtype": info.dtype, "declared_shape": list(decl), "shape": list(shape)}
            for info, decl, shape in zip(model.inputs, declared, shapes, strict=True)
        ],
        outputs=[{"name": info.name, "dtype": info.dtype, "shape": list(info.shape)} for info in model.outputs],
        metadata=dict(getattr(model, "metadata", {}) or {}),
    )


# ----------------------------------------------------------------------------- in a child process, and all artifacts
def _plan_fields(path: Path, label: str, options: BenchOptions, multi: bool) -> dict[str, Any]:
    """:func:`plan_artifact` in a worker process, returned as plain data (the runtime by name)."""
    plan = plan_artifact(path, label, options, multi=multi)
    fields = {name: getattr(plan, name) for name in ("path", "label", "size_bytes", "inputs", "outputs", "metadata")}
    return fields | {"runtime": plan.runtime.name}


def plan_isolated(path: Path, label: str, options: BenchOptions, *, multi: bool = False) -> ArtifactPlan:
    """:func:`plan_artifact`, run in a child process: a model that crashes the runtime (a
    segfault in its loader or kernels) ends that child, not the CLI, and becomes a one-line error.
    Errors edgetl raises there (bad file, shapes) come back as themselves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            fields = pool.submit(_plan_fields, Path(path), label, options, multi).result()
        except BrokenProcessPool:
            raise ArtifactError(
                f"the runtime crashed while loading or running {path} (the process died); the file is corrupt or "
                "uses something this runtime version cannot run: check it with `edgetl inspect`, or try the other runtime"
            ) from None
    runtime = RUNTIMES.get(fields.pop("runtime"))
    return ArtifactPlan(runtime=runtime, **fields)


def plan_bench(artifacts: Sequence[str | os.PathLike[str]], options: BenchOptions) -> list[ArtifactPlan]:
    """Check and load every artifact once, each in a child process (see :func:`plan_isolated`).

    Raises:
        ConfigError, ArtifactError, DataError: no artifacts, a bad file, or a ``--shape`` that
            names no input of any artifact.
    """
    if not artifacts:
        raise ConfigError("Received no artifacts; pass one or more .onnx or .tflite files")
    paths = [Path(a) for a in artifacts]
    labels = artifact_labels([p.resolve() if p.exists() else p for p in paths])
    multi = len(paths) > 1
    plans = [plan_isolated(path, label, options, multi=multi) for path, label in zip(paths, labels, strict=True)]
    all_inputs = {i["name"] for plan in plans for i in plan.inputs}
    unused = [name for name in options.shapes if name not in all_inputs]
    if unused:
        raise ConfigError(
            f"--shape names input {unused[0]!r}, which none of the artifacts has; their inputs: "
            + ", ".join(f"{plan.label}: {', '.join(repr(i['name']) for i in plan.inputs)}" for plan in plans)
        )
    return plans
