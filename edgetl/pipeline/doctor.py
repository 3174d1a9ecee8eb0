"""``edgetl doctor``: what this install has and can do, as facts a bug report or a GPU setup can quote.

One call, :func:`diagnose`, returns a :class:`DoctorReport`: rows of ``(check, value, status)`` for a
table, and the same facts as plain data for ``--json``. Status is ``ok``, ``note`` (worth knowing,
nothing is broken: a device install without TensorFlow, no GPU, weights not cached) or ``problem``
(something edgetl needs is broken: TensorFlow is installed but does not import, ``TF_CONFIG`` does
not parse). Nothing here downloads or builds a model: it runs offline, in the time TensorFlow takes
to import and list its devices. TensorFlow is imported inside :func:`diagnose`, only when it is installed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from edgetl import __version__
from edgetl.core.errors import EdgetlError
from edgetl.core.install import TRAIN_INSTALL, missing_modules
from edgetl.ml.backbones.spec import BACKBONES, KERAS_CACHE

log = logging.getLogger(__name__)

OK, NOTE, PROBLEM = "ok", "note", "problem"

#: Distributions whose versions shape what edgetl does, in the order shown.
PACKAGES = (
    "tensorflow", "tf-keras", "tensorflow-model-optimization", "tensorboard", "tf2onnx", "onnx", "onnxruntime",
    "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "tflite-micro", "numpy",
)
#: Shown even when absent (a note says so); the others only when installed.
_ALWAYS_SHOWN = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy")
#: NVIDIA's pip wheels that ``tensorflow[and-cuda]`` installs and TensorFlow loads first: the CUDA/cuDNN it really uses.
CUDA_WHEELS = {"cuda runtime": "nvidia-cuda-runtime-cu12", "cudnn": "nvidia-cudnn-cu12", "cublas": "nvidia-cublas-cu12"}
#: Tensor cores (what makes float16 compute fast) arrived with compute capability 7.0 (Volta).
TENSOR_CORE_CAPABILITY = (7, 0)
_NVIDIA_SMI_TIMEOUT_S = 10


@dataclass
class Check:
    """One row of the report: what was checked, what was found, and whether it is fine."""

    check: str
    value: str
    status: str = OK


@dataclass
class DoctorReport:
    """The rows for a table (:attr:`checks`) and the facts behind them as plain data (:attr:`facts`)."""

    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No row is a problem (notes are fine)."""
        return all(c.status != PROBLEM for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    def add(self, check: str, value: str, status: str = OK) -> None:
        self.checks.append(Check(check, value, status))

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: ``ok``, ``checks`` and every fact."""
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], **self.facts}


def diagnose(environ: dict[str, str] | None = None) -> DoctorReport:
    """Look at this install: Python, machine, packages, TensorFlow's build and GPUs, edgetl's extras,
    offline ImageNet weights, mixed-precision suitability and ``TF_CONFIG``.

    Args:
        environ: the environment to read ``TF_CONFIG`` from (default ``os.environ``).

    Returns:
        The report; ``report.ok`` is False when a row is a ``problem``.
    """
    environ = dict(os.environ if environ is None else environ)
    report = DoctorReport()
    _machine(report)
    _packages(report)
    gpus = _tensorflow(report)
    _nvidia_driver(report, gpus)
    _mixed_precision(report, gpus)
    _extras(report)
    _imagenet_weights(report)
    _tf_config(report, environ.get("TF_CONFIG"))
    return report


def _machine(report: DoctorReport) -> None:
    python = platform.python_version()
    report.facts.update(
        python=python,
        edgetl=__version__,
        platform={"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
                  "processor": _cpu_name(), "cpu_count": os.cpu_count()},
    )
    report.add("python", f"{python} ({platform.python_implementation()})")
    report.add("edgetl", __version__)
    p = report.facts["platform"]
    report.add("platform", f"{p['system']} {p['release']} {p['machine']}")
    report.add("cpu", f"{p['processor'] or 'unknown'}, {p['cpu_count']} logical cores")


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _packages(report: DoctorReport) -> None:
    versions = {name: _version(name) for name in PACKAGES}
    report.facts["packages"] = versions
    for name, version in versions.items():
        if version is not None:
            report.add(name, version)
        elif name in _ALWAYS_SHOWN:
            report.add(name, "not installed", NOTE)


def _tensorflow(report: DoctorReport) -> list[dict[str, Any]]:
    """TensorFlow's import, build (CUDA/cuDNN) and visible GPUs; returns the GPUs as dicts."""
    facts: dict[str, Any] = {"installed": False, "imported": False, "version": None, "error": None, "build": {}}
    report.facts["tensorflow"] = facts
    report.facts["gpus"] = []
    if missing_modules(("tensorflow",)):
        report.add("tensorflow import", f"not installed: a device install (eval, bench, predict, inspect); training needs {TRAIN_INSTALL}", NOTE)
        return []
    facts["installed"] = True
    try:
        # imported here, when the doctor runs: `edgetl --help` stays instant
        from edgetl.ml._keras import tf

        t = tf()
        facts["version"] = t.__version__
        facts["imported"] = True
        build = {k: v for k, v in dict(t.sysconfig.get_build_info()).items() if isinstance(v, str | bool | int | list)}
        facts["build"] = build
        physical = t.config.list_physical_devices("GPU")
        gpus = [_gpu_details(t, device) for device in physical]
    except Exception as exc:  # a broken install: any error TensorFlow raises is the finding
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        facts["error"] = f"{type(exc).__name__}: {first}"
        report.add("tensorflow import", f"fails: {facts['error']}", PROBLEM)
        return []
    report.facts["gpus"] = gpus
    report.add("tensorflow import", f"ok ({facts['version']})")
    report.add("tensorflow build", _build_text(build), OK if build.get("is_cuda_build") or platform.system() != "Linux" else NOTE)
    cuda_wheels = {label: _version(dist) for label, dist in CUDA_WHEELS.items()}
    facts["cuda_wheels"] = cuda_wheels
    if any(cuda_wheels.values()):
        report.add("cuda libraries (pip)", ", ".join(f"{label} {v}" for label, v in cuda_wheels.items() if v))
    if gpus:
        for i, gpu in enumerate(gpus):
            cc = gpu.get("compute_capability")
            cc_text = f", compute capability {cc[0]}.{cc[1]}" if cc else ""
            report.add(f"gpu {i}", f"{gpu.get('device_name') or gpu['name']}{cc_text}")
    else:
        hint = ("TensorFlow is a CUDA build; pip install \"edgetl[gpu]\" for the CUDA libraries, nvidia-smi for the driver"
                if build.get("is_cuda_build") else "training runs on the CPU")
        report.add("gpus", f"none visible: {hint}", NOTE)
    return gpus


def _build_text(build: dict[str, Any]) -> str:
    if build.get("is_cuda_build"):
        caps = build.get("cuda_compute_capabilities")
        caps_text = f", kernels for {', '.join(caps)}" if isinstance(caps, list) and caps else ""
        return f"CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}{caps_text}"
    if build.get("is_rocm_build"):
        return "ROCm build"
    return "CPU only (no CUDA build)"


def _gpu_details(t, device) -> dict[str, Any]:
    details: dict[str, Any] = {"name": device.name}
    try:
        found = t.config.experimental.get_device_details(device)
    except Exception:  # details are a bonus: the device is listed either way
        found = {}
    if found.get("device_name"):
        details["device_name"] = str(found["device_name"])
    cc = found.get("compute_capability")
    details["compute_capability"] = [int(cc[0]), int(cc[1])] if cc else None
    return details


def _nvidia_driver(report: DoctorReport, gpus: list[dict[str, Any]]) -> None:
    """The driver version from ``nvidia-smi``, when it is on PATH (a GPU machine without it: a note)."""
    smi = shutil.which("nvidia-smi")
    driver = None
    if smi is not None:
        try:
            done = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True,
                timeout=_NVIDIA_SMI_TIMEOUT_S, check=False,
            )
            lines = done.stdout.strip().splitlines()
            driver = lines[0].strip() if done.returncode == 0 and lines else None
        except (OSError, subprocess.SubprocessError):
            driver = None
    report.facts["nvidia_driver"] = driver
    if driver:
        report.add("nvidia driver", driver)
    elif smi is not None:
        report.add("nvidia driver", "nvidia-smi is installed but reports no GPU: check the driver and, in Docker, --gpus all", NOTE)
    elif gpus:
        report.add("nvidia driver", "nvidia-smi not on PATH (TensorFlow sees GPUs anyway)", NOTE)


def _mixed_precision(report: DoctorReport, gpus: list[dict[str, Any]]) -> None:
    caps = [tuple(g["compute_capability"]) for g in gpus if g.get("compute_capability")]
    if not gpus:
        suitable, value, status = False, "no GPU: float16 compute on the CPU is slower than float32; leave --mixed-precision off", NOTE
    elif caps and min(caps) >= TENSOR_CORE_CAPABILITY:
        low = min(caps)
        suitable, value, status = True, f"tensor cores (compute capability {low[0]}.{low[1]}): --mixed-precision should speed training up", OK
    elif caps:
        low = min(caps)
        suitable, value, status = False, (f"compute capability {low[0]}.{low[1]} has no tensor cores (needs 7.0+): "
                                          "--mixed-precision saves memory but little time"), NOTE
    else:
        suitable, value, status = False, "GPU compute capability unknown: measure with benchmarks/gpu_check.py", NOTE
    report.facts["mixed_precision"] = {"suitable": suitable, "reason": value}
    report.add("mixed precision", value, status)


def extras_status(requires: list[str] | None = None, extras: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """For each optional extra of edgetl: whether everything it requires (for this platform) is installed.

    Args:
        requires: ``Requires-Dist`` lines (default: installed edgetl's metadata).
        extras: the extras to look at (default: installed edgetl's ``Provides-Extra``, or those in ``requires``).

    Returns:
        ``{extra: {"installed": bool, "missing": [requirement, ...], "requirements": n}}``; extras that
        require nothing (kept for old instructions) are left out.
    """
    from packaging.requirements import InvalidRequirement, Requirement  # matplotlib's dependency: always present

    if requires is None:
        dist = importlib_metadata.distribution("edgetl")
        requires = list(dist.requires or [])
        extras = extras or list(dist.metadata.get_all("Provides-Extra") or [])
    parsed = []
    for line in requires:
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement:
            log.debug("unparsable requirement in edgetl's metadata: %s", line)
    if extras is None:
        extras = sorted({m for r in parsed if r.marker for m in _marker_extras(str(r.marker))})
    result: dict[str, dict[str, Any]] = {}
    for extra in extras:
        wanted = [r for r in parsed if r.marker is not None and r.marker.evaluate({"extra": extra})]
        if not wanted:
            continue
        missing = [item for r in wanted for item in _unmet(r, set())]
        result[extra] = {"installed": not missing, "missing": missing, "requirements": len(wanted)}
    return result


def _marker_extras(marker: str) -> list[str]:
    return re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)


def _unmet(req, seen: set[str]) -> list[str]:
    """What of ``req`` is not installed: the distribution itself (absent, or at another version), or,
    for ``tensorflow[and-cuda]``, the requirements of its extras. Empty: met."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    version = _version(req.name)
    if version is None:
        return [req.name]
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return [f"{req.name}{req.specifier} ({version} installed)"]
    name = canonicalize_name(req.name)
    if not req.extras or name in seen:
        return []
    seen.add(name)
    unmet: list[str] = []
    for line in importlib_metadata.requires(req.name) or []:
        try:
            sub = Requirement(line)
        except InvalidRequirement:
            continue
        if sub.marker is not None and any(sub.marker.evaluate({"extra": e}) for e in req.extras):
            unmet += _unmet(sub, seen)
    return unmet


def _extras(report: DoctorReport) -> None:
    try:
        extras = extras_status()
    except importlib_metadata.PackageNotFoundError:
        report.facts["extras"] = {}
        report.add("extras", "edgetl's package metadata is missing (run from a source tree?): pip install -e .", NOTE)
        return
    except ImportError:  # no `packaging`: nothing to parse requirements with
        report.facts["extras"] = {}
        report.add("extras", "cannot tell: the `packaging` module is missing", NOTE)
        return
    report.facts["extras"] = extras
    for extra, state in extras.items():
        if state["installed"]:
            report.add(f"extra [{extra}]", "installed")
        else:
            shown = ", ".join(state["missing"][:4]) + (f" and {len(state['missing']) - 4} more" if len(state["missing"]) > 4 else "")
            report.add(f"extra [{extra}]", f"not installed: lacks {shown}", NOTE)


def _imagenet_weights(report: DoctorReport) -> None:
    """Whether each registered backbone's ImageNet weights are available without a download."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in BACKBONES.items():
        if spec.extra.get("user_file"):
            continue
        if spec.weights_file is not None:
            path = KERAS_CACHE.expanduser() / spec.weights_file(spec.default_alpha, spec.default_input_size)
            cached = path.is_file()
            found[name] = {"available": cached, "source": "keras cache", "path": str(path)}
            value = f"cached: {path}" if cached else f"not cached, downloads on first use: {KERAS_CACHE}/{path.name}"
            report.add(f"weights {name}", value, OK if cached else NOTE)
        elif spec.imagenet_weights is not None:
            try:
                path_text = str(spec.imagenet_weights())
                found[name] = {"available": True, "source": "package", "path": path_text}
                report.add(f"weights {name}", f"installed: {path_text}")
            except EdgetlError as exc:
                found[name] = {"available": False, "source": "package", "path": None}
                report.add(f"weights {name}", str(exc), NOTE)
        else:
            found[name] = {"available": False, "source": None, "path": None}
            report.add(f"weights {name}", "no ImageNet weights published: --weights none or PATH", NOTE)
    report.facts["imagenet_weights"] = found


def _tf_config(report: DoctorReport, raw: str | None) -> None:
    """``TF_CONFIG`` (MultiWorkerMirroredStrategy's cluster): set or not, parses or not, this task's role.

    Only the job names, their sizes and this task's type/index are shown: never the addresses or anything else in it.
    """
    facts: dict[str, Any] = {"set": raw is not None, "valid": None}
    report.facts["tf_config"] = facts
    if raw is None:
        report.add("TF_CONFIG", "not set (one machine)")
        return
    try:
        config = json.loads(raw)
    except ValueError as exc:
        facts["valid"] = False
        facts["error"] = f"not JSON ({exc.msg} at character {exc.pos})"
        report.add("TF_CONFIG", f"set but {facts['error']}: fix or unset it", PROBLEM)
        return
    error = _tf_config_error(config)
    if error:
        facts["valid"] = False
        facts["error"] = error
        report.add("TF_CONFIG", f"set but {error}: fix or unset it", PROBLEM)
        return
    cluster, task = config["cluster"], config["task"]
    facts.update(valid=True, task_type=task["type"], task_index=task["index"], jobs={job: len(hosts) for job, hosts in cluster.items()})
    jobs = ", ".join(f"{len(hosts)} {job}" for job, hosts in cluster.items())
    if task["type"] in ("worker", "chief"):
        report.add("TF_CONFIG", f"task {task['type']} {task['index']} in a cluster of {jobs}")
    else:  # ml.distribute refuses other task types when --strategy multiworker starts
        report.add("TF_CONFIG", f"task {task['type']} {task['index']} in a cluster of {jobs}: edgetl runs worker and chief tasks only", NOTE)


def _tf_config_error(config: Any) -> str | None:
    if not isinstance(config, dict):
        return "not a JSON object"
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        return "has no \"cluster\" object naming the jobs' hosts"
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            return f"its cluster job {job!r} is not a list of host:port strings"
    if not isinstance(task, dict):
        return "has no \"task\" object ({\"type\": ..., \"index\": ...})"
    kind, index = task.get("type"), task.get("index")
    if not isinstance(kind, str) or kind not in cluster:
        return f"its task type {kind!r} is not a job of the cluster ({', '.join(map(repr, cluster))})"
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        return f"its task index {index!r} is not in 0..{len(cluster[kind]) - 1} for job {kind!r}"
    return None
