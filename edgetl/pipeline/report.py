"""Human-readable reports (Markdown) from the metadata edgetl writes beside each artifact."""

from __future__ import annotations

from typing import Any

from edgetl.core.contract import image_size_text


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1024**2 else f"{num_bytes / 1024**2:.2f} MiB"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def latency_rows(latency: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for entry in latency:
        s = entry["stats"]
        rows.append([entry["runtime"], entry["threads"], f"{s['p50_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['mean_ms']:.3f}", s["runs"], s["warmup"]])
    return rows


def vs_float(drop: float | None) -> str:
    """A top-1 difference that reads one way only: ``5.5 pts lower than float``, ``0.5 pts higher than float``."""
    if drop is None or drop != drop:
        return "n/a"
    points = round(100 * drop, 1)
    if points == 0:
        return "same as float"
    return f"{abs(points):.1f} pts {'lower' if points > 0 else 'higher'} than float"


def accuracy_rows(meta: dict[str, Any]) -> list[list[str]]:
    """Float, (PTQ int8,) quantized Keras and shipped artifact, on the same images."""
    acc = meta["accuracy"]
    rows = [["float (Keras)", _pct(acc["float_top1"]), _pct(acc["float_top5"]), ""]]
    ptq = acc.get("ptq_comparison")
    if ptq:
        rows.append(["PTQ int8 (LiteRT)", _pct(ptq["artifact_top1"]), _pct(ptq["artifact_top5"]), vs_float(ptq["top1_drop"])])
    if acc["source"] == "qat":
        rows.append(["QAT (Keras)", _pct(acc["source_keras_top1"]), "", ""])
    choice = acc.get("int8_choice") or {}
    runtime = _RUNTIME_NAMES.get(meta.get("runtime", "litert"), meta.get("runtime"))
    if choice.get("shipped") == "ptq" and choice.get("qat_int8_top1") is not None:
        rows.append([f"QAT int8 ({meta['target']}, {runtime}, not shipped)", _pct(choice["qat_int8_top1"]), "", vs_float(acc["float_top1"] - choice["qat_int8_top1"])])
    label = {"qat": "QAT int8", "ptq": "PTQ int8"}.get(choice.get("shipped"), "QAT int8" if acc["source"] == "qat" else meta["target"])
    fmt = f"{meta['target']}, " if label != meta["target"] else ""
    rows.append([f"{label} ({fmt}{runtime}, shipped)", _pct(acc["artifact_top1"]), _pct(acc["artifact_top5"]), vs_float(acc["top1_drop"])])
    other = acc.get("companion")
    if other:
        drop = acc["float_top1"] - other["artifact_top1"]
        rows.append([f"{label} ({other['target']}, {_RUNTIME_NAMES.get(other['runtime'], other['runtime'])}, same scales)", _pct(other["artifact_top1"]), "", vs_float(drop)])
    return rows


_RUNTIME_NAMES = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}


def companion_lines(meta: dict[str, Any]) -> list[str]:
    """The same int8 model in the other format: agreement, size, speed, and (for ONNX) how ORT runs it."""
    other = meta["accuracy"].get("companion")
    if not other:
        return []
    lines = [
        "## The same int8 model in the other format",
        "",
        f"`{other['file']}` ({other['target']}, {_size(other['size_bytes'])}) holds the same int8 scales as `{meta['model_file']}`: "
        f"the two agree on top-1 for {_pct(other['top1_agreement_with_target'])} of the validation images "
        f"(max |probability difference| {other['max_abs_diff_with_target']:.4f}).",
        "",
        table(["format", "runtime", "threads", "p50 ms", "p90 ms", "p99 ms"], [
            [m, _RUNTIME_NAMES.get(e["runtime"], e["runtime"]), e["threads"], f"{e['stats']['p50_ms']:.3f}", f"{e['stats']['p90_ms']:.3f}", f"{e['stats']['p99_ms']:.3f}"]
            for m, entries in ((meta["target"], meta.get("latency", [])), (other["target"], other["latency"])) for e in entries
        ]),
        "",
    ]
    onnx = meta.get("onnx") if meta.get("format", meta.get("kind")) == "onnx" else other.get("onnx")
    graph = meta.get("graph") if meta.get("kind") == "onnx" else other.get("graph")
    if onnx and graph:
        lines += onnx_lines(onnx, graph)
    return lines


def onnx_lines(onnx: dict[str, Any], graph: dict[str, Any]) -> list[str]:
    lines = [f"ONNX route (opset {onnx.get('opset')}): {onnx.get('route', '')}."]
    rewrite = onnx.get("rewrite")
    if rewrite:
        lines.append(
            f"The rewrite gave {rewrite['activation_zero_points_to_uint8']} activation quantizers uint8 zero points and removed "
            f"{rewrite['clips_removed']} redundant clips ({rewrite['clips_kept']} kept)."
        )
    if graph.get("convs"):
        lines.append(
            f"ONNX Runtime (all graph optimizations) runs {graph['int8_convs']} of {graph['convs']} convolutions as int8 `QLinearConv`"
            + (f"; {graph['float_convs_after_optimization']} stay float." if graph.get("float_convs_after_optimization") else ".")
        )
    return ["", " ".join(lines), ""]


def graph_lines(meta: dict[str, Any]) -> list[str]:
    """Operators of the graph, and for an int8 model whether it is full-integer (and if not, which ops and why)."""
    graph = meta.get("graph")
    if not graph:
        return []
    ops = ", ".join(f"{name} x{count}" for name, count in graph["ops"].items())
    lines = [f"- operators: {ops}"]
    if graph.get("ort_optimized_ops"):
        lines.append("- as ONNX Runtime runs it: " + ", ".join(f"{name} x{count}" for name, count in graph["ort_optimized_ops"].items()))
    if meta.get("dtype") == "int8":
        if graph["full_integer"] and meta.get("kind") == "onnx":
            lines.append(f"- int8 in ONNX Runtime: yes, all {graph['convs']} convolutions fuse to QLinearConv")
        elif graph["full_integer"]:
            lines.append("- full-integer: yes, every operator between input and output reads and writes int8/int32 tensors")
        else:
            names = sorted({op["op"] for op in graph["float_ops"]})
            lines.append(
                f"- full-integer: **no**: {len(graph['float_ops'])} operator(s) run in float ({', '.join(names)}): "
                f"{graph.get('float_ops_reason', '')}"
            )
    return lines


def more_lines(meta: dict[str, Any]) -> list[str]:
    """Links to (and the figures of) the files written beside ``report.md`` (``report_files`` in the metadata)."""
    files = meta.get("report_files") or {}
    if not files:
        return []
    lines = ["## Model card, figures and mistakes", ""]
    if "model_card" in files:
        lines.append(f"- [Model card]({files['model_card']}): intended use, data, per-class precision/recall/F1, int8 vs float, limitations")
    if "training_curves" in files:
        lines.append(f"- [Training curves]({files['training_curves']}): loss and accuracy per epoch, phases marked, discarded epochs shaded")
    if "confusion_matrix" in files:
        lines.append(f"- [Confusion matrix]({files['confusion_matrix']}): validation split, the shipped artifact")
    if "misclassified" in files:
        gallery = meta.get("misclassified") or {}
        count = gallery.get("misclassified")
        what = (
            "none: every validation image is classified correctly" if count == 0
            else f"{count} of {gallery.get('images')} validation images, {gallery.get('shown')} shown" if count is not None else "validation images"
        )
        lines.append(f"- [Misclassified images]({files['misclassified']}): {what}")
    lines.append("")
    for key, alt in (("training_curves", "Training curves"), ("confusion_matrix", "Confusion matrix")):
        if key in files:
            lines += [f"![{alt}]({files[key]})", ""]
    return lines


def build_report(meta: dict[str, Any]) -> str:
    """The ``report.md`` of a build: what was made, how accurate, how fast, from what."""
    acc = meta["accuracy"]
    io = meta.get("inputs", [{}])[0]
    out = meta.get("outputs", [{}])[0]
    contract = meta["preprocessing"]
    config = meta.get("config", {})
    lines = [
        f"# edgetl build: {meta.get('name', '')} / {meta['target']}",
        "",
        f"Backbone `{meta.get('backbone')}` at {image_size_text(contract)} px{' grayscale' if contract.get('channel_order') == 'L' else ''}, {len(meta['class_names'])} classes, "
        f"weights `{config.get('model', {}).get('weights')}`; quantization: {meta.get('quantization_mode') or 'none'}"
        + (f" (int8 ranges: {meta['int8_ranges']})" if meta.get("int8_ranges") else "") + ".",
        "",
        "## Accuracy (validation split, the same images for every model)",
        "",
        table(["model", "top-1", "top-5", "top-1 vs float"], accuracy_rows(meta)),
        "",
        *([f"Shipped: {acc['int8_choice']['reason']}.", ""] if acc.get("int8_choice") else []),
        f"{acc['images']} validation images. Top-1 agreement of the artifact with the Keras model it was converted from: "
        f"{_pct(acc['top1_agreement_with_source'])}."
        + (
            f" PTQ int8 (calibrated on {meta.get('config', {}).get('export', {}).get('representative_samples', '?')} training images, "
            f"no QAT) agrees with the float model on {_pct(acc['ptq_comparison']['top1_agreement_with_float'])}; "
            "it is kept in `../ptq-int8/` for comparison."
            if acc.get("ptq_comparison") else ""
        ),
        "",
        "Per class (artifact):",
        "",
        table(["class", "accuracy", "images"], [[name, _pct(v["accuracy"]), v["support"]] for name, v in acc["per_class"].items()]),
        "",
        *more_lines(meta),
        f"## Latency ({_RUNTIME_NAMES.get(meta.get('runtime', 'litert'), meta.get('runtime'))}, batch 1, ms)",
        "",
        table(["runtime", "threads", "p50", "p90", "p99", "mean", "runs", "warm-up"], latency_rows(meta.get("latency", []))),
        "",
        f"Measured on {meta.get('machine', {}).get('cpu', 'this machine')} ({meta.get('machine', {}).get('cores', '?')} cores). "
        "A quick check (warm-up, then timed runs on synthetic input, in this process); `edgetl bench` measures properly.",
        "",
        *companion_lines(meta),
        "## The artifact",
        "",
        f"- file: `{meta['model_file']}`, {_size(meta['size_bytes'])}",
        f"- input: `{io.get('name')}` {io.get('shape')} {io.get('dtype')}, scale {io.get('scale')}, zero point {io.get('zero_point')}",
        f"- output: `{out.get('name')}` {out.get('shape')} {out.get('dtype')}, scale {out.get('scale')}, zero point {out.get('zero_point')}",
        f"- preprocessing: resize to {image_size_text(contract)} ({contract['resize']}), "
        f"{contract['channel_order']}, `(pixel - {contract['mean']}) / {contract['std']}`"
        + (", then quantize with the input scale and zero point" if io.get("dtype") in ("int8", "uint8") else ""),
        f"- note: {meta.get('note', '')}",
        *graph_lines(meta),
        *(onnx_lines(meta["onnx"], meta.get("graph", {})) if meta.get("kind") == "onnx" and meta.get("onnx") and not meta["accuracy"].get("companion") else []),
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        "",
        "The resolved configuration is in `edgetl.json` (`config`).",
        "",
    ]
    return "\n".join(lines)
