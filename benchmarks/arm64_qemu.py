"""arm64 without a board: edgetl's stand-alone runner on an emulated arm64 Debian, outputs checked against x86.

What it does (issue 5; the recipe is the one shared/STACK.md found to work in this sandbox,
which has no binfmt_misc, so ``debootstrap --arch=arm64`` cannot run its second stage):

1. An arm64 Debian root, made once and cached: ``debootstrap --foreign --arch=arm64
   --variant=minbase --include=python3.11 bookworm ROOT MIRROR``, then ``dpkg -x`` of every
   downloaded ``.deb`` into ROOT.
2. PyPI's aarch64 wheels of numpy and of the runtime versions that work under Debian's qemu
   7.2 (onnxruntime 1.32.0 segfaults at import there and ai-edge-litert 2.3.0 at invoke; the
   pins below were checked), unzipped into a folder put on ``sys.path``.
3. edgetl's int8 models (a tiny MobileNetV2 exported by edgetl to ``tflite-int8`` and
   ``onnx-int8``, plus ``tflite-fp32``), or the artifacts given on the command line.
4. ``edgetl/bench/board_runner.py`` (the same file ``edgetl bench --remote`` copies to a board) on a
   fixed input, once with this machine's Python and runtimes, once under
   ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11``; the first run's outputs must be
   equal (integer outputs exactly, float outputs within 1e-4).
5. The real package, installed as a board installs it: edgetl's wheel (built from this checkout)
   and its TensorFlow-free dependencies, resolved by pip for aarch64
   (``pip install --target --platform manylinux...aarch64``, with the runtime pins above), then
   ``python -m edgetl inspect`` and ``predict --json`` in the emulated Python on each model; the
   predictions must equal this machine's ``edgetl predict`` (int8: the same top-1 and scores within one
   output step, 1/256, as the float image resize may round differently on arm64; float: within 1e-4).

Emulated timings are not latency figures: qemu-user translates every arm64 instruction into
x86 code. The report says so next to every number.

Usage:
    python benchmarks/arm64_qemu.py [ARTIFACT ...] [--cache ~/.cache/edgetl/arm64]
                                    [--out benchmarks/out/arm64_qemu] [--mirror URL] [--setup-only]

Exit status: 0 when every artifact's outputs agree, 1 when one does not, 2 when setup fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetl.bench.emulated import (
    DEFAULT_MIRROR,
    GUEST_PYTHON,
    GUEST_WHEELS,
    NOT_LATENCY,
    SUITE,
    WHEEL_PLATFORMS,
    SetupError,
    default_cache,
    ensure_tools,
    guest_command,
    prepare_root,
    prepare_wheels,
    qemu_version,
    run_tool,
)

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "edgetl" / "bench" / "board_runner.py"
DEFAULT_CACHE = default_cache()
FLOAT_TOLERANCE = 1e-4
#: ``edgetl predict`` on an int8 model: the image is decoded, resized and normalised in float on each
#: machine, and arm64's float rounding (Pillow's resampling, numpy's SIMD) can move one input value
#: across a quantization boundary, which moves an output score by one step of the int8 softmax
#: output (scale 1/256). Seen once in CI (max diff 0.00391 on one score, labels equal). The runner
#: comparison, which feeds both machines the same int8 tensors, stays exact.
INT8_PREDICT_TOLERANCE = 1 / 256 + 1e-6

log = logging.getLogger("arm64_qemu")
_run = run_tool  # the setup pieces (root, wheels, guest command) live in edgetl.bench.emulated, shared with the arm64-emulated board


# ----------------------------------------------------------------------------- models
def make_models(out: Path) -> list[Path]:
    """A tiny MobileNetV2 (alpha 0.35, 32 px, 3 classes, random weights, BatchNorm statistics
    estimated on random images) exported by edgetl: tflite-int8 (int8 input and output),
    onnx-int8 (made from it), tflite-fp32."""
    paths = [out / "mnv2-int8.tflite", out / "mnv2-int8.onnx", out / "mnv2-fp32.tflite"]
    if all(p.exists() for p in paths):
        return paths
    from edgetl.core.types import IODType
    from edgetl.export.onnx import export_onnx
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES

    out.mkdir(parents=True, exist_ok=True)
    from edgetl.ml.phases import reestimate_batchnorm

    model, contract = build_classifier(BACKBONES.get("mobilenet_v2"), 3, 32, 0.35, "none")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    # Random weights with Keras' initial BatchNorm statistics make every activation vanish (the
    # outputs are exactly uniform, which would make the comparison meaningless): estimate them.
    reestimate_batchnorm(model, pixels, contract)
    labels = ["a", "b", "c"]  # embedded in each file, so `edgetl predict` needs nothing beside it
    export_tflite(model, "tflite-int8", paths[0], representative=pixels, contract=contract, io_dtype=IODType.int8, class_names=labels)
    export_onnx("onnx-int8", paths[1], tflite_int8=paths[0], class_names=labels, contract=contract)
    export_tflite(model, "tflite-fp32", paths[2], representative=None, contract=contract, class_names=labels)
    return paths


# ----------------------------------------------------------------------------- the real package
def prepare_package(work: Path) -> tuple[Path, dict]:
    """edgetl's wheel from this checkout plus its device dependencies, installed by pip for aarch64 into
    ``work/site-edgetl`` (not cached: the wheel is this checkout's code; pip caches the downloads)."""
    site = work / "site-edgetl"
    shutil.rmtree(site, ignore_errors=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgetl-wheel-") as tmp:
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(REPO)])
        (wheel,) = Path(tmp).glob("edgetl-*.whl")
        platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:", *platforms,
              "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--target", str(site),
              str(wheel), *GUEST_WHEELS])
    for so in site.rglob("*.so*"):
        so.chmod(0o755)
    installed = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    heavy = [name for name in installed if name.lower().replace("_", "-") in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx")]
    if heavy:
        raise SetupError(f"the device install pulled in {heavy}: the base package must not depend on TensorFlow")
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    return site, {"wheel": wheel.name, "distributions": len(installed), "size_bytes": size,
                  "install_s": round(time.perf_counter() - start, 1)}


def _predict(prefix: list[str], env: dict | None, model: Path, images: list[Path]) -> list[dict]:
    result = subprocess.run([*prefix, "-m", "edgetl", "predict", str(model), *map(str, images), "--json", "--top-k", "3"],
                            capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise SetupError(f"edgetl predict {model.name} exited {result.returncode}: {(result.stderr or result.stdout).strip()[-600:]}")
    return json.loads(result.stdout)["predictions"]


def check_package(root: Path, site: Path, artifacts: list[Path], out: Path) -> list[dict]:
    """``python -m edgetl inspect`` and ``predict`` in the emulated Python, predictions compared with this machine's."""
    from PIL import Image

    qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"})
    guest = [qemu, "-L", str(root), str(root / GUEST_PYTHON)]
    images = []
    rng = np.random.default_rng(1)
    for i in range(2):
        path = out / "images" / f"image{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        images.append(path)
    results = []
    for model in artifacts:
        start = time.perf_counter()
        inspect = subprocess.run([*guest, "-m", "edgetl", "inspect", str(model), "--json"], capture_output=True, text=True, env=env, timeout=1800)
        if inspect.returncode != 0:
            raise SetupError(f"edgetl inspect {model.name} (emulated arm64) exited {inspect.returncode}: {(inspect.stderr or inspect.stdout).strip()[-600:]}")
        arm = _predict(guest, env, model, images)
        x86 = _predict([sys.executable], None, model, images)
        quantized = "int8" in model.name
        tolerance = INT8_PREDICT_TOLERANCE if quantized else FLOAT_TOLERANCE
        diffs = [abs(a["score"] - b["score"]) for ra, rb in zip(arm, x86, strict=True) for a, b in zip(ra["top"], rb["top"], strict=True)]
        # int8: the top-1 label (scores within one output step may swap the lower ranks); float: every label
        shown = 1 if quantized else None
        same_labels = [[p["label"] for p in r["top"][:shown]] for r in arm] == [[p["label"] for p in r["top"][:shown]] for r in x86]
        results.append({"artifact": str(model), "inspect": "ok", "predictions": len(arm), "same_labels": same_labels,
                        "max_score_diff": max(diffs), "rule": f"within {tolerance:.3g}" + (" (one int8 output step)" if quantized else ""),
                        "equal": same_labels and max(diffs) <= tolerance,
                        "wall_s": round(time.perf_counter() - start, 1)})
    return results


# ----------------------------------------------------------------------------- the check
def _runner(prefix: list[str], env: dict | None, args: list[str], timeout: float) -> dict:
    result = subprocess.run([*prefix, str(RUNNER), *args], capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        where = "emulated arm64" if env is not None else "x86"
        raise SetupError(f"the runner ({where}) exited {result.returncode} with no outcome: {result.stderr.strip()[-600:]}")
    return json.loads(lines[-1])


def check_artifact(path: Path, out: Path, guest: tuple[list[str], dict], runs: int, warmup: int) -> dict:
    """Run the runner on ``path`` with a fixed input, on x86 and emulated arm64; compare the first run's outputs."""
    from edgetl.bench.options import BenchOptions
    from edgetl.bench.plan import plan_bench

    options = BenchOptions(threads=(1,), warmup=warmup, runs=runs, profile_runs=0)
    (plan,) = plan_bench([path], options)
    work = out / path.name.replace(".", "_")
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    input_files = []
    for i, info in enumerate(plan.inputs):
        from edgetl.bench.board_runner import synthetic_input

        file = work / f"input{i}.npy"
        np.save(file, synthetic_input(info["shape"], info["dtype"], rng))
        input_files.append(str(file))
    spec = {"path": str(path.resolve()), "runtime": plan.runtime.name, "threads": 1, "shapes": plan.shapes,
            "dtypes": [i["dtype"] for i in plan.inputs], "warmup": warmup, "runs": runs, "duration_s": None,
            "profile_runs": 0, "seed": 0, "input_files": input_files}
    outcomes, timings = {}, {}
    for side, (prefix, env) in {"x86": ([sys.executable], None), "arm64": guest}.items():
        spec_path = work / f"spec-{side}.json"
        spec_path.write_text(json.dumps({**spec, "outputs_file": str(work / f"outputs-{side}.npz")}))
        start = time.perf_counter()
        outcomes[side] = _runner(prefix, env, ["--spec", str(spec_path)], timeout=1800)
        timings[side] = time.perf_counter() - start
        if not outcomes[side].get("ok"):
            raise SetupError(f"{path.name} on {side}: {outcomes[side].get('message')}")
    x86 = np.load(work / "outputs-x86.npz")
    arm = np.load(work / "outputs-arm64.npz")
    outputs = []
    for key in x86.files:
        a, b = x86[key], arm[key]
        exact = np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size and a.shape == b.shape else float("inf")
        equal = a.dtype == b.dtype and a.shape == b.shape and (np.array_equal(a, b) if exact else diff <= FLOAT_TOLERANCE)
        outputs.append({"name": key, "dtype": a.dtype.name, "shape": list(a.shape), "rule": "exact" if exact else f"within {FLOAT_TOLERANCE:g}",
                        "max_abs_diff": diff, "equal": bool(equal), "distinct_values": int(np.unique(a).size),
                        "x86_values": a.ravel()[:8].tolist()})
    return {
        "artifact": str(path), "runtime": plan.runtime.name, "inputs": plan.inputs,
        "versions": {side: o["result"]["runtime_version"] for side, o in outcomes.items()},
        # An output that is one constant (a degenerate model) would pass any comparison: say so.
        "outputs": outputs, "equal": all(o["equal"] for o in outputs),
        "informative": all(o["distinct_values"] > 1 for o in outputs),
        "p50_ms": {side: o["result"]["stats"]["p50_ms"] for side, o in outcomes.items()},
        "cold_start_ms": {side: o["result"]["cold_start_ms"] for side, o in outcomes.items()},
        "wall_s": {side: round(t, 2) for side, t in timings.items()},
        "machine": {side: o["machine"] for side, o in outcomes.items()},
        "runs": runs, "warmup": warmup,
    }


def render_report(doc: dict) -> str:
    setup = doc["setup"]
    lines = [
        "# edgetl runner on emulated arm64 (qemu-user)", "",
        f"**{NOT_LATENCY}**", "",
        f"Emulator: {doc['qemu']}; guest: Debian {SUITE} arm64, Python 3.11, {', '.join(GUEST_WHEELS)} (aarch64 wheels).",
        f"Host: {doc['host']['cpu']}, Python {doc['host']['python']}.", "",
        "## Outputs: x86 vs emulated arm64 (first run, fixed input)", "",
        "| artifact | runtime x86 / arm64 | output | first values (x86) | rule | max abs diff | equal |", "|---|---|---|---|---|---|---|",
    ]
    for item in doc["artifacts"]:
        for o in item["outputs"]:
            lines.append(f"| {Path(item['artifact']).name} | {item['runtime']} {item['versions']['x86']} / {item['versions']['arm64']} | "
                         f"{o['dtype']} {o['shape']} | {', '.join(format(v, '.4g') for v in o['x86_values'])} | {o['rule']} | {o['max_abs_diff']:.3g} | {'yes' if o['equal'] else '**NO**'} |")
    lines += ["", "## Timings (emulated: NOT latency figures)", "",
              f"{NOT_LATENCY}", "",
              "| artifact | p50 ms x86 | p50 ms emulated arm64 (not a latency) | runner wall s x86 / emulated |", "|---|---|---|---|"]
    for item in doc["artifacts"]:
        lines.append(f"| {Path(item['artifact']).name} | {item['p50_ms']['x86']:.3f} | {item['p50_ms']['arm64']:.3f} | "
                     f"{item['wall_s']['x86']} / {item['wall_s']['arm64']} |")
    if doc.get("package"):
        pkg = doc["package"]
        lines += ["", "## The real package on emulated arm64", "",
                  f"`pip install --target --platform aarch64` of {pkg['install']['wheel']} and its device dependencies "
                  f"({pkg['install']['distributions']} distributions, {pkg['install']['size_bytes'] / 2**20:.0f} MiB, no TensorFlow), "
                  "then `python -m edgetl inspect` and `predict --json` under qemu, compared with this machine's `edgetl predict`.", "",
                  "| artifact | inspect | top-3 labels equal | max score diff | rule | equal |", "|---|---|---|---|---|---|"]
        for item in pkg["checks"]:
            lines.append(f"| {Path(item['artifact']).name} | {item['inspect']} | {'yes' if item['same_labels'] else '**NO**'} | "
                         f"{item['max_score_diff']:.3g} | {item['rule']} | {'yes' if item['equal'] else '**NO**'} |")
    lines += ["", "## Setup", "",
              f"- arm64 root: {'cached' if setup['root']['cached'] else 'made now'}; debootstrap --foreign "
              f"{setup['root'].get('debootstrap_s')} s + dpkg -x of {setup['root'].get('packages')} packages {setup['root'].get('unpack_s')} s",
              f"- wheels: {'cached' if setup['wheels']['cached'] else 'made now'}; pip download + unzip {setup['wheels'].get('download_and_unzip_s')} s",
              f"- this run: setup {setup['this_run_s']} s, models {doc['models_s']} s, checks {doc['checks_s']} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="*", type=Path, help=".tflite/.onnx files (default: edgetl's tiny int8 models)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the arm64 root and wheels are kept")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "arm64_qemu")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror for debootstrap")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (emulated runs are slow)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--setup-only", action="store_true", help="prepare the root and the wheels, then stop")
    parser.add_argument("--skip-package", action="store_true", help="check the stand-alone runner only, not the installed package")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    start = time.perf_counter()
    try:
        ensure_tools()
        root, root_info = prepare_root(args.cache, args.mirror)
        site, wheel_info = prepare_wheels(args.cache)
        guest = guest_command(root, site)
        check = _runner(guest[0], guest[1], ["--check", "onnxruntime", "litert"], timeout=600)
        if not check.get("ok"):
            raise SetupError(f"the emulated Python cannot import the runtimes: {check.get('message')}")
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_s = round(time.perf_counter() - start, 1)
    print(f"setup {setup_s} s (root {'cached' if root_info['cached'] else 'made'}, wheels {'cached' if wheel_info['cached'] else 'made'}); "
          f"emulated: {check['machine']['machine']}, Python {check['machine']['python']}, {check['versions']}")
    if args.setup_only:
        return 0

    start = time.perf_counter()
    artifacts = args.artifacts or make_models(args.out / "models")
    models_s = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    try:
        results = [check_artifact(Path(a), args.out, guest, args.runs, args.warmup) for a in artifacts]
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checks_s = round(time.perf_counter() - start, 1)
    package = None
    if not args.skip_package:
        try:
            package_site, install = prepare_package(args.out)
            package = {"install": install, "checks": check_package(root, package_site, [Path(a) for a in artifacts], args.out)}
        except (SetupError, subprocess.CalledProcessError) as exc:
            print(f"error: the installed package on emulated arm64: {exc}", file=sys.stderr)
            return 2
    from edgetl.bench.board_runner import machine_info

    doc = {
        "kind": "edgetl.arm64_qemu", "note": NOT_LATENCY, "qemu": qemu_version(), "host": machine_info(),
        "guest": check["machine"], "guest_versions": check["versions"], "guest_wheels": list(GUEST_WHEELS),
        "setup": {"root": root_info, "wheels": wheel_info, "this_run_s": setup_s}, "models_s": models_s, "checks_s": checks_s,
        "artifacts": results, "package": package, "platform": platform.platform(),
        "all_equal": all(r["equal"] for r in results) and all(c["equal"] for c in (package or {}).get("checks", [])),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arm64_qemu.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "report.md").write_text(render_report(doc))
    for r in results:
        print(f"{Path(r['artifact']).name}: {r['runtime']} x86 {r['versions']['x86']} vs arm64 {r['versions']['arm64']}: "
              f"outputs {'equal' if r['equal'] else 'DIFFER'} ({', '.join(o['rule'] + ', max diff ' + format(o['max_abs_diff'], '.3g') for o in r['outputs'])})")
    for c in (package or {}).get("checks", []):
        print(f"{Path(c['artifact']).name}: installed edgetl on arm64: inspect {c['inspect']}, predictions "
              f"{'equal' if c['equal'] else 'DIFFER'} ({c['rule']}, max score diff {c['max_score_diff']:.3g})")
    print(NOT_LATENCY)
    print(f"wrote {args.out / 'report.md'} and arm64_qemu.json")
    if not all(r["informative"] for r in results):
        print("error: an output is one constant value: the comparison says nothing; use a model with varied outputs", file=sys.stderr)
        return 1
    return 0 if doc["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
