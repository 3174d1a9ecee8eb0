"""ONNX int8 in ONNX Runtime: edgetl's onnx-int8 vs ORT's quantize_static vs onnx-fp32, and the
bench harness's own overhead.

1. Latency (issue 4): MobileNetV2 1.0 at 224 px (random weights: latency does not depend on
   them), exported by edgetl to ``onnx-fp32`` and, through a calibrated int8 TFLite model, to
   ``onnx-int8``; ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights,
   uint8 activations, the recommended x86 form) on the same fp32 ONNX model with the same
   calibration images. All three measured by ``edgetl bench``'s harness in one run, 1 thread,
   several rounds, median p50.
2. Harness overhead: edgetl's p50 (fresh process, ``bench_worker``) against a bare
   ``session.run`` / ``interpreter.invoke`` loop in this process on the same artifact, same thread
   count, alternated over rounds.
3. ``--agreement BUILD_ROOT``: for every ``*/tflite-int8/model.tflite`` under a folder of edgetl
   builds, the ONNX int8 model made from it, and top-1 agreement of ONNX Runtime with LiteRT on
   the build's own validation images.

Usage:
    python benchmarks/bench_onnx.py [--size 224] [--runs 300] [--rounds 3] [--out benchmarks/out/onnx]
    python benchmarks/bench_onnx.py --agreement benchmarks/out/backbones/build
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def make_artifacts(out: Path, size: int) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgetl.core.types import IODType
    from edgetl.export.onnx import INPUT_NAME, export_onnx
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES

    out.mkdir(parents=True, exist_ok=True)
    spec = BACKBONES.get("mobilenet_v2")
    model, contract = build_classifier(spec, 10, size, 1.0, "none")
    pixels = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    labels = [f"class{i}" for i in range(10)]
    paths = {"onnx-fp32": out / "mnv2-fp32.onnx", "tflite-int8": out / "mnv2-int8.tflite", "onnx-int8": out / "mnv2-int8.onnx", "quantize_static": out / "mnv2-quantize-static.onnx"}
    export_onnx("onnx-fp32", paths["onnx-fp32"], model=model, class_names=labels, contract=contract)
    export_tflite(model, "tflite-int8", paths["tflite-int8"], representative=pixels, contract=contract, io_dtype=IODType.int8)
    export_onnx("onnx-int8", paths["onnx-int8"], tflite_int8=paths["tflite-int8"], class_names=labels, contract=contract)

    normalized = contract.normalize(pixels)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT_NAME: normalized[i : i + 1]} for i in range(len(normalized))])

        def get_next(self):
            return next(self.items, None)

    pre = out / "mnv2-fp32-pre.onnx"
    # ONNX's own shape inference is enough for this static-shape model; the symbolic pass needs
    # sympy, which onnxruntime 1.32 no longer installs (the script failed without it).
    quant_pre_process(str(paths["onnx-fp32"]), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(paths["quantize_static"]), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    return paths


def latency(paths: dict[str, Path], args) -> dict:
    from edgetl.bench.harness import run_bench, write_bench
    from edgetl.bench.options import BenchOptions

    names = ["onnx-fp32", "quantize_static", "onnx-int8"]
    options = BenchOptions(threads=(1,), warmup=args.warmup, runs=args.runs, profile_runs=0)
    rounds = {name: [] for name in names}
    doc = None
    for _ in range(args.rounds):
        doc = run_bench([paths[n] for n in names], options)
        for name, entry in zip(names, doc["artifacts"], strict=True):
            rounds[name].append(entry["results"][0]["stats"]["p50_ms"])
    write_bench(doc, args.out / "latency")
    p50 = {name: float(np.median(v)) for name, v in rounds.items()}
    return {
        "p50_ms": p50,
        "rounds_p50_ms": rounds,
        "onnx_int8_over_fp32": p50["onnx-int8"] / p50["onnx-fp32"],
        "onnx_int8_over_quantize_static": p50["onnx-int8"] / p50["quantize_static"],
        "machine": doc["machine"],
    }


def bare_p50(path: Path, runs: int, warmup: int) -> float:
    """A bare loop on one thread: the runtime call between two perf_counter_ns reads, nothing else."""
    from edgetl.bench.board_runner import synthetic_input

    rng = np.random.default_rng(0)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        from edgetl.runtime.ort_session import create_session

        session = create_session(ort, str(path), options)  # as edgetl's runtime opens it
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feed = {inp.name: synthetic_input(shape, np.float32 if inp.type == "tensor(float)" else np.int8, rng)}

        def call():
            session.run(None, feed)
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], synthetic_input(detail["shape"], detail["dtype"], rng))

        def call():
            interpreter.invoke()
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(runs):
        start = clock()
        call()
        samples.append((clock() - start) / 1e6)
    return float(np.median(samples))


def overhead(paths: dict[str, Path], args) -> dict:
    from edgetl.bench.harness import run_bench
    from edgetl.bench.options import BenchOptions

    options = BenchOptions(threads=(1,), warmup=args.warmup, runs=args.runs, profile_runs=0)
    result = {}
    for name in ("onnx-int8", "tflite-int8"):
        edgetl_p50, bare = [], []
        for _ in range(args.rounds):
            bare.append(bare_p50(paths[name], args.runs, args.warmup))
            edgetl_p50.append(run_bench([paths[name]], options)["artifacts"][0]["results"][0]["stats"]["p50_ms"])
        ratio = float(np.median(edgetl_p50) / np.median(bare))
        result[name] = {"edgetl_p50_ms": edgetl_p50, "bare_p50_ms": bare, "edgetl_over_bare": ratio}
    return result


def agreement(root: Path) -> list[dict]:
    """ONNX int8 (from each build's int8 TFLite) vs LiteRT on the build's validation images."""
    from edgetl.core.config import BuildConfig
    from edgetl.core.metadata import read_model_info
    from edgetl.data.split import load_split
    from edgetl.export.onnx import export_onnx
    from edgetl.runtime.litert import LiteRTModel
    from edgetl.runtime.onnxruntime import ORTModel

    rows = []
    for tflite in sorted(root.glob("*/tflite-int8/model.tflite")):
        info = read_model_info(tflite)
        config = BuildConfig.model_validate(info.extra["config"])
        split = load_split(config.data, info.contract.input_size)
        onnx_path, details = export_onnx("onnx-int8", tflite.with_name("agreement.onnx"), tflite_int8=tflite, class_names=info.class_names, contract=info.contract)
        x = info.contract.normalize(split.val.x)
        a, b = LiteRTModel(tflite).predict(x), ORTModel(onnx_path).predict(x)
        rows.append({
            "build": tflite.parent.parent.name, "backbone": info.backbone, "images": len(x),
            "top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))), "max_abs_diff": float(np.abs(a - b).max()),
            "onnx_top1": float(np.mean(b.argmax(1) == split.val.y)), "tflite_top1": float(np.mean(a.argmax(1) == split.val.y)),
            "int8_convs": details["graph"]["int8_convs"], "convs": details["graph"]["convs"],
            "ort_float_ops": {k: v for k, v in details["graph"]["ort_optimized_ops"].items() if not k.startswith("QLinear") and k not in ("QuantizeLinear", "DequantizeLinear")},
        })
        logging.info("RESULT %s", json.dumps(rows[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/onnx"))
    parser.add_argument("--agreement", type=Path, default=None, help="a folder of edgetl builds: ONNX vs TFLite int8 agreement instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.agreement:
        rows = agreement(args.agreement)
        print("| build | backbone | val images | ONNX int8 vs TFLite int8 top-1 agreement | max abs diff | TFLite int8 top-1 | ONNX int8 top-1 | int8 convs in ORT | ops ORT runs in float |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['build']} | {r['backbone']} | {r['images']} | {100 * r['top1_agreement']:.1f}% | {r['max_abs_diff']:.4f} | {100 * r['tflite_top1']:.1f}% "
                  f"| {100 * r['onnx_top1']:.1f}% | {r['int8_convs']}/{r['convs']} | {r['ort_float_ops'] or 'none'} |")
        return
    paths = make_artifacts(args.out, args.size)
    result = {"latency": latency(paths, args), "overhead": overhead(paths, args), "sizes": {k: p.stat().st_size for k, p in paths.items()}}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    lat = result["latency"]
    print(f"MobileNetV2 1.0 @ {args.size}, ONNX Runtime, 1 thread, median p50 of {args.rounds} rounds x {args.runs} runs")
    print("| model | p50 ms | vs onnx-fp32 | size |\n|---|---|---|---|")
    for name in ("onnx-fp32", "quantize_static", "onnx-int8"):
        print(f"| {name} | {lat['p50_ms'][name]:.3f} | {lat['p50_ms'][name] / lat['p50_ms']['onnx-fp32']:.2f}x | {result['sizes'][name] / 2**20:.2f} MiB |")
    print(f"onnx-int8 / quantize_static: {lat['onnx_int8_over_quantize_static']:.3f}")
    print("| artifact | bare loop p50 ms (rounds) | edgetl bench p50 ms (rounds) | edgetl / bare |\n|---|---|---|---|")
    for name, r in result["overhead"].items():
        print(f"| {name} | {', '.join(f'{v:.3f}' for v in r['bare_p50_ms'])} | {', '.join(f'{v:.3f}' for v in r['edgetl_p50_ms'])} | {r['edgetl_over_bare']:.3f} |")


if __name__ == "__main__":
    main()
