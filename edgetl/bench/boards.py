"""Where to measure and evaluate: ``local``, ``ssh://user@host[:port]`` or ``arm64-emulated``.

A board is what :func:`edgetl.bench.harness.run_bench` takes as ``where`` (``measure``, ``machine``,
``notes``, ``isolation``), plus a ``label``, whether it is ``emulated``, and
:meth:`~_ArtifactPredictions.predict_artifact`: class probabilities for uint8 images computed from
outputs the board made. The host does what ``edgetl eval`` does before and after the runtime (the
artifact's preprocessing contract, the model's input quantization; reading the outputs back,
dequantized: :mod:`edgetl.runtime.classify`); the board runs the model, in a fresh process of the
stand-alone runner (:mod:`edgetl.bench.board_runner`), so a native crash never takes edgetl down:

- ``local``: this machine; benchmarks as ``edgetl bench`` does (one fresh worker per measurement),
  predictions in a fresh ``python board_runner.py`` process.
- ``ssh://...``: a board over SSH (:class:`edgetl.bench.remote.RemoteBoard`).
- ``arm64-emulated``: an arm64 Debian Python under qemu-user on this machine
  (:mod:`edgetl.bench.emulated`, prepared once by ``python benchmarks/arm64_qemu.py --setup-only``);
  its timings are marked emulated: they are not latency figures.

Use::

    for spec in parse_boards(["local", "ssh://pi@raspberrypi.local"], identity="~/.ssh/id_ed25519"):
        with open_board(spec) as board:
            doc = bench_on(board, ["model.tflite"], BenchOptions())
            probs = board.predict_artifact(Path("model.tflite"), pixels)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench import board_runner as _runner
from edgetl.bench.harness import LocalMachine, run_bench
from edgetl.bench.isolation import error_class, measurement_spec
from edgetl.bench.options import BenchOptions
from edgetl.bench.plan import ArtifactPlan, plan_bench
from edgetl.bench.remote import RemoteBoard, SSHTarget, make_target
from edgetl.core import errors
from edgetl.core.errors import ConfigError
from edgetl.core.progress import Progress
from edgetl.runtime.classify import checked_scores, model_input
from edgetl.runtime.formats import known_suffixes, model_info_for, open_model, runtime_format_for
from edgetl.runtime.model import LoadedModel

logger = logging.getLogger(__name__)

LOCAL, SSH, ARM64_EMULATED = "local", "ssh", "arm64-emulated"
ACCEPTED_FORMS = "local, ssh://user@host[:port] (e.g. ssh://pi@raspberrypi.local), arm64-emulated"
EMULATED_NOTE = (
    "emulated timings are not latency figures: qemu-user translates every arm64 instruction into x86 code, "
    "so they only show that the model ran on arm64"
)
DEFAULT_BATCH = 64


@dataclass(frozen=True)
class BoardSpec:
    """A board named on the command line, checked but not contacted.

    Attributes:
        kind: ``local``, ``ssh`` or ``arm64-emulated``.
        label: how reports name it (``local``, the ``ssh://user@host:port`` URL, ``arm64-emulated``).
        target: for ``ssh``, how to reach it.
    """

    kind: str
    label: str
    target: SSHTarget | None = None


def parse_boards(
    values: Sequence[str],
    *,
    identity: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    python: str = "python3",
) -> list[BoardSpec]:
    """Check ``--board`` values (each may hold several, comma-separated); nothing is contacted.

    Args:
        values: ``local``, ``ssh://user@host[:port]``, ``arm64-emulated``; an empty list means ``local``.
        identity, known_hosts, insecure, python: how to reach every ``ssh://`` board
            (:func:`edgetl.bench.remote.make_target`).

    Returns:
        One :class:`BoardSpec` per board, in order (one report column each).

    Raises:
        ConfigError: text that is none of the accepted forms, a board named twice, a bad SSH URL or
            key file, or SSH options without an ``ssh://`` board (one line listing the accepted forms).
    """
    texts = [part.strip() for value in values for part in str(value).split(",")] if values else [LOCAL]
    specs: list[BoardSpec] = []
    for text in texts:
        lowered = text.lower()
        if lowered == LOCAL:
            spec = BoardSpec(LOCAL, LOCAL)
        elif lowered in (ARM64_EMULATED, "arm64-emu", "qemu-arm64"):
            spec = BoardSpec(ARM64_EMULATED, ARM64_EMULATED)
        elif lowered.startswith("ssh://"):
            target = make_target(text, identity=identity, known_hosts=known_hosts, insecure=insecure, python=python)
            spec = BoardSpec(SSH, target.url, target)
        else:
            raise ConfigError(f"Received board {text!r}: pass one or more of {ACCEPTED_FORMS}")
        if any(s.label == spec.label for s in specs):
            raise ConfigError(f"Received board {spec.label} twice; name each board once ({ACCEPTED_FORMS})")
        specs.append(spec)
    ssh_options = identity is not None or known_hosts is not None or insecure or python != "python3"
    if ssh_options and not any(s.kind == SSH for s in specs):
        raise ConfigError("--identity, --known-hosts, --insecure-no-host-key-check and --remote-python need an ssh://user@host board")
    return specs


# ----------------------------------------------------------------------------- prediction, shared by every board
class _ArtifactPredictions:
    """``predict_artifact`` for a board that offers ``predict(model, inputs, batch_size=...)`` (raw tensors in, raw outputs back)."""

    def predict(self, model: Path, inputs: np.ndarray, *, batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def _host_model(self, artifact: Path) -> LoadedModel:
        """The artifact opened here once (checked, probed in a child): its input and output tensors' dtypes and scales."""
        cache: dict[Path, LoadedModel] = self.__dict__.setdefault("_host_models", {})
        key = artifact.resolve()
        if key not in cache:
            cache[key] = open_model(artifact)
        return cache[key]

    def predict_artifact(self, artifact: str | os.PathLike[str], pixels: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Class probabilities ``(N, classes)`` for uint8 images ``(N, H, W, C)``, from outputs made on this board.

        What ``edgetl eval`` does (:func:`edgetl.device.evaluate.load_predictor`), split where it crosses
        to the board: here the artifact's own preprocessing contract and the model's input
        quantization; on the board the runtime, ``batch_size`` images per invoke (or the model's fixed
        batch); here the outputs read back (dequantized, float32).

        Raises:
            ConfigError: not a ``.tflite`` or ``.onnx`` file.
            ArtifactError, DataError: no labels or contract, images of the wrong shape, a model that fails.
            RemoteError, MissingDependencyError: the board could not run it.
        """
        artifact = Path(artifact)
        if runtime_format_for(artifact) is None:
            raise ConfigError(f"Received {artifact}: a board runs {', '.join(known_suffixes(lambda f: f.open is not None))} files")
        if batch_size < 1:
            raise ConfigError(f"Received batch_size={batch_size}; pass a positive integer")
        info = model_info_for(artifact)
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != tuple(info.contract.input_shape):
            raise errors.DataError(
                f"Received images {pixels.dtype} {tuple(pixels.shape)}; {artifact} takes uint8 (N, {', '.join(map(str, info.contract.input_shape))})"
            )
        model = self._host_model(artifact)
        if len(pixels) == 0:
            return np.zeros((0, len(info.class_names)), np.float32)
        raw = self.predict(artifact, model_input(model, info.contract, pixels), batch_size=batch_size)
        return checked_scores(model.from_output(raw), artifact, info.class_names)


# ----------------------------------------------------------------------------- the runner in a local process
def runner_process(
    prefix: list[str], env: dict[str, str] | None, spec: dict[str, Any], *, what: str,
    report: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Run the stand-alone runner (``prefix + [board_runner.py, --spec ...]``) on ``spec`` in a fresh process.

    Returns:
        The runner's outcome (``ok`` true).

    Raises:
        EdgetlError: the subclass the runner named (same message).
        ArtifactError: the process died of a signal (the runtime crashed on the model).
        RuntimeError: it failed otherwise (a bug; the end of its stderr is attached).
    """
    with tempfile.TemporaryDirectory(prefix="edgetl-board-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        command = [*prefix, _runner.__file__, "--spec", str(spec_path), "--result", str(result_path)]
        proc = subprocess.Popen(
            [*command, "--progress"] if report else command,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        )
        tail: list[str] = []
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith(_runner.PROGRESS_PREFIX):
                    if report is not None:
                        done, total, *message = line[len(_runner.PROGRESS_PREFIX):].split(maxsplit=2)
                        report(int(done), int(total), " ".join(message).strip())
                elif line.strip():
                    tail = [*tail[-19:], line.rstrip()]
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if result_path.is_file():
            outcome = json.loads(result_path.read_text(encoding="utf-8"))
            if outcome.get("ok"):
                return outcome
            message = outcome.get("message", f"{what} failed")
            if outcome.get("pip"):
                message += f"; run: {outcome['pip']}"
            raise error_class(outcome.get("error"))(message)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise errors.ArtifactError(f"{what} crashed ({name}); the model may be corrupt or use something the runtime cannot run")
    raise RuntimeError(f"{what}: the runner exited with code {code}:\n" + "\n".join(tail))


# ----------------------------------------------------------------------------- the boards

def _predict_through_files(run: Callable[[dict[str, Any]], Any], model: Path, inputs: np.ndarray, batch_size: int, threads: int | None) -> np.ndarray:
    """The runner's predict mode on this machine's disk: inputs to a .npy, ``run(spec)``, outputs read back (no pickle)."""
    with tempfile.TemporaryDirectory(prefix="edgetl-predict-") as tmp:
        inputs_file, outputs_file = Path(tmp, "inputs.npy"), Path(tmp, "outputs.npy")
        np.save(inputs_file, np.ascontiguousarray(inputs), allow_pickle=False)
        run({"mode": "predict", "path": str(Path(model).resolve()), "runtime": None, "threads": threads,
             "inputs_file": str(inputs_file), "outputs_file": str(outputs_file), "batch_size": int(batch_size)})
        return np.load(outputs_file, allow_pickle=False)


class LocalBoard(LocalMachine, _ArtifactPredictions):
    """This machine: measurements as ``edgetl bench`` makes them, predictions in a fresh runner process."""

    label = LOCAL
    emulated = False

    def check_runtimes(self, runtimes: Sequence[str]) -> dict[str, Any]:
        """Nothing to check: this machine's runtimes are edgetl's own (a missing one fails when a model is opened)."""
        return {"ok": True, "machine": self.machine()}

    def predict(self, model: Path, inputs: np.ndarray, *, batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> np.ndarray:
        """Raw outputs of ``model`` for ready input tensors, run by the stand-alone runner in a fresh Python process."""
        return _predict_through_files(
            lambda spec: runner_process([sys.executable], None, spec, what=f"predicting with {Path(model).name}"), model, inputs, batch_size, threads,
        )


class SSHBoard(RemoteBoard, _ArtifactPredictions):
    """A board over SSH (:class:`~edgetl.bench.remote.RemoteBoard`) with a label and ``predict_artifact``."""

    emulated = False

    @property
    def label(self) -> str:
        return self.target.url


class EmulatedArm64Board(_ArtifactPredictions):
    """Debian's arm64 Python under qemu-user on this machine, running the stand-alone runner.

    Every measurement is marked ``"emulated": true`` and ``notes()`` says that emulated timings are
    not latency figures.
    """

    label = ARM64_EMULATED
    emulated = True
    isolation = (
        "each (artifact, thread count) runs in a fresh emulated arm64 Python process on this machine "
        "(qemu-aarch64-static, edgetl's stand-alone runner)"
    )

    def __init__(self, guest: tuple[list[str], dict[str, str]]) -> None:
        self.prefix, self.env = guest
        self._check: dict[str, Any] = {}

    def _outcome(self, spec: dict[str, Any], what: str, report=None) -> dict[str, Any]:
        outcome = runner_process(self.prefix, self.env, spec, what=f"{what} (emulated arm64)", report=report)
        if outcome.get("machine"):
            self._check.setdefault("machine", outcome["machine"])
        return outcome

    def check_runtimes(self, runtimes: Sequence[str], *, force: bool = False) -> dict[str, Any]:
        """Ask the emulated Python whether numpy and ``runtimes`` import; remember its machine and versions.

        The guest's packages are edgetl's pinned wheels, so for the runtimes they hold nothing is run
        unless ``force`` (each emulated Python start costs seconds).
        """
        if not force and set(runtimes) <= {"litert", "onnxruntime"}:
            return {"ok": True, **self._check}
        with tempfile.TemporaryDirectory(prefix="edgetl-board-") as tmp:
            result = Path(tmp, "check.json")
            subprocess.run([*self.prefix, _runner.__file__, "--check", *runtimes, "--result", str(result)],
                           env=self.env, capture_output=True, text=True, check=False)
            outcome = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else {}
        if not outcome.get("ok"):
            raise errors.MissingDependencyError(
                f"the emulated arm64 Python cannot run {', '.join(runtimes) or 'numpy'}: {outcome.get('message', 'no answer')}; "
                "prepare it again: python benchmarks/arm64_qemu.py --setup-only"
            )
        self._check.update(outcome)
        return outcome

    def measure(self, plan: ArtifactPlan, threads: int, options: BenchOptions, report: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
        spec = measurement_spec(plan, threads, options)
        result = self._outcome(spec, f"benchmarking {plan.label}", report)["result"]
        return {**result, "emulated": True}

    def predict(self, model: Path, inputs: np.ndarray, *, batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> np.ndarray:
        """Raw outputs of ``model`` for ready input tensors, run by the runner under the emulated arm64 Python."""
        return _predict_through_files(lambda spec: self._outcome(spec, f"predicting with {Path(model).name}"), model, inputs, batch_size, threads)

    def machine(self) -> dict[str, Any]:
        if not self._check.get("machine"):
            self.check_runtimes([], force=True)
        return dict(self._check["machine"])

    def notes(self) -> dict[str, Any]:
        # the qemu and debootstrap tooling: imported only for the emulated board
        from edgetl.bench.emulated import GUEST_WHEELS, qemu_version

        try:
            emulator = qemu_version()
        except (errors.EdgetlError, OSError):
            emulator = "unknown"
        return {"emulated": {"timings": EMULATED_NOTE, "emulator": emulator, "guest_wheels": list(GUEST_WHEELS)}}


@contextmanager
def open_board(spec: BoardSpec) -> Iterator[LocalBoard | SSHBoard | EmulatedArm64Board]:
    """The board ``spec`` names, ready to measure and predict; an SSH board is disconnected (its temp folder removed) at the end.

    Raises:
        ConfigError: ``arm64-emulated`` is not prepared (names the command that prepares it).
        RemoteError: an SSH board cannot be reached or refuses the key or host key.
    """
    if spec.kind == LOCAL:
        yield LocalBoard()
    elif spec.kind == SSH:
        assert spec.target is not None
        with SSHBoard(spec.target) as board:
            yield board
    elif spec.kind == ARM64_EMULATED:
        # the qemu and debootstrap tooling: imported only for the emulated board
        from edgetl.bench.emulated import cached_guest

        yield EmulatedArm64Board(cached_guest())
    else:
        raise ConfigError(f"Received board kind {spec.kind!r}; pass one of {ACCEPTED_FORMS}")


def bench_on(
    board: Any, artifacts: Sequence[str | os.PathLike[str] | ArtifactPlan], options: BenchOptions, progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`edgetl.bench.harness.run_bench` with every measurement on ``board``.

    The artifacts are planned on this machine first; the board is asked whether it has their
    runtimes (a missing one is one line naming the ``pip install``).

    Returns:
        The ``bench.json`` document, plus ``board``: ``{"label", "emulated"}``.
    """
    if artifacts and all(isinstance(a, ArtifactPlan) for a in artifacts):
        plans = list(artifacts)
    else:
        plans = plan_bench(artifacts, options)
    board.check_runtimes(sorted({plan.runtime.name for plan in plans}))
    doc = run_bench(plans, options, progress=progress, where=board)
    doc["board"] = {"label": board.label, "emulated": bool(board.emulated)}
    return doc
