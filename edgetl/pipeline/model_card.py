"""``MODEL_CARD.md``: what a build's model is for, what it was trained on, how well it does and
where it falls short, written from the build's own results.

Everything in the card is read from the build's ``edgetl.json`` (the dict :func:`render_model_card`
takes): the data summary and per-class counts (``data``), per-class precision/recall/F1 of the
shipped artifact on the validation split (``scores``, computed by :func:`class_scores` from the
confusion matrix), int8-vs-float accuracy and agreement (``accuracy``), latency and the machine it
was measured on, and versions. The limitations are chosen from the same figures (a small or
imbalanced validation set, weak classes, frequent confusions, the int8 drop), not copied in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgetl.core.contract import image_size_text
from edgetl.pipeline.report import _RUNTIME_NAMES, _pct, _size, latency_rows, table, vs_float

CARD = "MODEL_CARD.md"
#: Below this many validation images the figures are called rough.
SMALL_VAL_SET = 200
#: A class with fewer validation images than this is named as thinly measured.
SMALL_VAL_CLASS = 20
#: Train-count ratio between the largest and the smallest class above which the card warns.
IMBALANCE_RATIO = 3.0
#: A class whose recall or F1 is below this is named as weak.
WEAK_CLASS = 0.8
#: Classes listed by name in the intended-use section before "and N more".
LISTED_CLASSES = 30


def class_scores(confusion: list[list[int]] | np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Per-class precision, recall and F1 from a confusion matrix (``confusion[true][predicted]``).

    Precision is ``None`` for a class never predicted and recall ``None`` for a class without
    images; F1 is ``2 tp / (2 tp + fp + fn)`` (``None`` only when both are ``None``). The macro
    averages run over the classes with images (a class never predicted counts as precision 0).

    Returns:
        ``{"per_class": {name: {precision, recall, f1, support, predicted}}, "macro_precision", "macro_recall", "macro_f1"}``.
    """
    counts = np.asarray(confusion, dtype=np.int64).reshape(len(class_names), len(class_names))
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(class_names):
        tp = int(counts[i, i])
        support = int(counts[i].sum())
        predicted = int(counts[:, i].sum())
        fp, fn = predicted - tp, support - tp
        per_class[name] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / support if support else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
            "support": support,
            "predicted": predicted,
        }
    present = [v for v in per_class.values() if v["support"]]

    def macro(key: str) -> float | None:
        return float(np.mean([v[key] or 0.0 for v in present])) if present else None

    return {"per_class": per_class, "macro_precision": macro("precision"), "macro_recall": macro("recall"), "macro_f1": macro("f1")}


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _code(text: Any, *, cell: bool = False) -> str:
    """Inline code that survives backticks in user-provided names (and, in a table ``cell``, pipes)."""
    text = str(text).replace("\n", " ")
    if cell:
        text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _class_list(names: list[str]) -> str:
    shown = ", ".join(_code(n) for n in names[:LISTED_CLASSES])
    more = len(names) - LISTED_CLASSES
    return shown + (f" and {more} more (all in `labels.txt`)" if more > 0 else "")


def _artifact_label(meta: dict[str, Any]) -> str:
    runtime = _RUNTIME_NAMES.get(meta.get("runtime", ""), meta.get("runtime") or "?")
    return f"`{meta['model_file']}` ({meta['target']}, {meta.get('dtype', '?')}, {runtime})"


def intended_use_lines(meta: dict[str, Any]) -> list[str]:
    names = meta["class_names"]
    size = image_size_text(meta["preprocessing"])
    image = "grayscale" if meta["preprocessing"].get("channel_order") == "L" else "RGB"
    return [
        "## Intended use",
        "",
        f"- Classifies one image into one of {len(names)} classes: {_class_list(names)}.",
        f"- Runs on device: {_artifact_label(meta)}, {_size(meta['size_bytes'])}, one {size} {image} image per call, "
        "preprocessed as `edgetl.json` (`preprocessing`) says.",
        "- Not for:",
        f"  - images of anything else: there is no \"none of these\" answer, so an unrelated image still gets one of the {len(names)} classes, "
        "often with high confidence;",
        "  - finding or counting objects, or images with several objects (it is a classifier, not a detector);",
        "  - images unlike the training images (other cameras, lighting, backgrounds, viewpoints) before its accuracy on them has been measured "
        "(`edgetl eval <artifact> --data <folder>`);",
        "  - decisions about people's safety, health or rights without a human check.",
        "",
    ]


def data_lines(meta: dict[str, Any]) -> list[str]:
    data = meta.get("data")
    if not data:
        return ["## Data", "", "Not recorded in this build's `edgetl.json`.", ""]
    if data.get("val_path"):
        split = f"a separate validation folder, `{data['val_path']}`"
    else:
        split = f"{_pct(data.get('val_split'))} of each class held out for validation (stratified, seed {data.get('seed')})"
    classes = data.get("per_class", {})
    lines = [
        "## Data",
        "",
        f"- folder: `{data.get('path')}`",
        f"- images: {data['train_images'] + data['val_images']} used, {data['train_images']} for training and {data['val_images']} for validation; "
        f"split: {split}",
        f"- unreadable files skipped: {data.get('skipped_files', 0)}",
        "",
        "Classes and images per class:",
        "",
        table(["class", "train", "validation"], [[_code(name, cell=True), c["train"], c["val"]] for name, c in classes.items()]),
        "",
    ]
    return lines


def metrics_lines(meta: dict[str, Any]) -> list[str]:
    acc = meta["accuracy"]
    scores = meta.get("scores") or class_scores(acc["confusion"], meta["class_names"])
    rows = [
        [_code(name, cell=True), _num(v["precision"]), _num(v["recall"]), _num(v["f1"]), v["support"]]
        for name, v in scores["per_class"].items()
    ]
    rows.append(["**macro average**", _num(scores["macro_precision"]), _num(scores["macro_recall"]), _num(scores["macro_f1"]), acc["images"]])
    return [
        f"## Accuracy of the shipped artifact ({acc.get('split', 'validation')} split, {acc['images']} images)",
        "",
        f"{_artifact_label(meta)}: top-1 {_pct(acc['artifact_top1'])}, top-5 {_pct(acc['artifact_top5'])}.",
        "",
        table(["class", "precision", "recall", "F1", "images"], rows),
        "",
    ]


def int8_lines(meta: dict[str, Any]) -> list[str]:
    acc = meta["accuracy"]
    lines = ["## int8 vs float" if meta.get("dtype") == "int8" else "## Shipped artifact vs float (Keras)", ""]
    rows = [["float (Keras)", _pct(acc["float_top1"]), _pct(acc["float_top5"]), "", ""]]
    if acc.get("source") == "qat":
        rows.append(["QAT (Keras)", _pct(acc.get("source_keras_top1")), "", "", ""])
    rows.append([
        f"shipped: {meta['target']}", _pct(acc["artifact_top1"]), _pct(acc["artifact_top5"]),
        vs_float(acc["top1_drop"]), _pct(acc.get("top1_agreement_with_float")),
    ])
    lines += [
        table(["model", "top-1", "top-5", "top-1 vs float", "top-1 agreement with float"], rows),
        "",
    ]
    if meta.get("dtype") == "int8":
        lines.append(
            f"The int8 model ({acc.get('source')}; int8 ranges {meta.get('int8_ranges', 'n/a')}) and the float model give the same top-1 class "
            f"on {_pct(acc.get('top1_agreement_with_float'))} of the {acc['images']} validation images; "
            f"it agrees with the Keras model it was converted from on {_pct(acc.get('top1_agreement_with_source'))}."
        )
    else:
        lines.append(
            f"The shipped artifact is {meta.get('dtype', 'float')}, not int8; it agrees with the Keras model it was converted from on "
            f"{_pct(acc.get('top1_agreement_with_source'))} of the validation images."
        )
    return [*lines, ""]


def latency_lines(meta: dict[str, Any]) -> list[str]:
    machine = meta.get("machine", {})
    where = ", ".join(
        str(part) for part in (
            machine.get("cpu"), f"{machine.get('cores')} logical cores" if machine.get("cores") else None, machine.get("machine"),
            machine.get("distro") or machine.get("os"), f"Python {machine['python']}" if machine.get("python") else None,
        ) if part
    )
    return [
        f"## Latency ({_RUNTIME_NAMES.get(meta.get('runtime', ''), meta.get('runtime'))}, batch 1, ms)",
        "",
        table(["runtime", "threads", "p50", "p90", "p99", "mean", "runs", "warm-up"], latency_rows(meta.get("latency", []))),
        "",
        f"Measured on the build machine: {where or 'not recorded'}; warm-up, then timed runs on synthetic input. "
        "On the target device it will differ: measure there with `edgetl bench`.",
        "",
    ]


def limitations(meta: dict[str, Any]) -> list[str]:
    """The limitations this build's own figures show, most important first."""
    acc = meta["accuracy"]
    data = meta.get("data") or {}
    classes = data.get("per_class") or {}
    scores = meta.get("scores") or class_scores(acc["confusion"], meta["class_names"])
    found = []
    images = acc["images"]
    if images and images < SMALL_VAL_SET:
        found.append(
            f"Small validation set: {images} images, so one image moves top-1 by {100 / images:.1f} points; "
            "treat every figure here as rough and measure on more images (`edgetl eval`)."
        )
    thin = sorted((c["val"], name) for name, c in classes.items() if c["val"] < SMALL_VAL_CLASS)
    if thin:
        shown = ", ".join(f"{_code(name)} ({count})" for count, name in thin[:10])
        found.append(f"Per-class figures rest on few images for: {shown}" + (f" and {len(thin) - 10} more" if len(thin) > 10 else "") + ".")
    train_counts = {name: c["train"] for name, c in classes.items() if c["train"]}
    if len(train_counts) >= 2:
        big = max(train_counts, key=train_counts.__getitem__)
        small = min(train_counts, key=train_counts.__getitem__)
        ratio = train_counts[big] / train_counts[small]
        if ratio > IMBALANCE_RATIO:
            found.append(
                f"Imbalanced classes: {_code(big)} has {train_counts[big]} training images, {_code(small)} {train_counts[small]} "
                f"({ratio:.1f}x); the model leans towards the larger classes."
            )
    weak = [
        (name, v) for name, v in scores["per_class"].items()
        if v["support"] and ((v["recall"] is not None and v["recall"] < WEAK_CLASS) or (v["f1"] is not None and v["f1"] < WEAK_CLASS))
    ]
    if weak:
        shown = ", ".join(f"{_code(name)} (recall {_num(v['recall'])}, F1 {_num(v['f1'])})" for name, v in weak[:10])
        found.append(f"Weak classes (recall or F1 below {WEAK_CLASS}): {shown}" + (f" and {len(weak) - 10} more" if len(weak) > 10 else "") + ".")
    names = meta["class_names"]
    confusion = np.asarray(acc["confusion"], dtype=np.int64).reshape(len(names), len(names))
    pairs = sorted(((int(confusion[i, j]), i, j) for i in range(len(names)) for j in range(len(names)) if i != j and confusion[i, j]), reverse=True)
    if pairs:
        shown = "; ".join(f"{_code(names[i])} taken for {_code(names[j])} {count}x" for count, i, j in pairs[:3])
        found.append(f"Most frequent confusions (validation): {shown}. See `confusion_matrix.png` and `misclassified.html`.")
    if meta.get("dtype") == "int8" and acc["top1_drop"] > 0.01:
        found.append(f"Quantization costs accuracy: int8 top-1 is {100 * acc['top1_drop']:.1f} points lower than float.")
    size = image_size_text(meta["preprocessing"])
    found.append(
        f"Input size: every image is resized whole to {size} ({meta['preprocessing'].get('resize', 'bilinear')}, no crop, "
        "so the aspect ratio is not kept); details much smaller than the image are lost."
    )
    weights = ((meta.get("config") or {}).get("model") or {}).get("weights")
    if isinstance(weights, str) and weights.lower() == "none":
        found.append(
            f"Trained from scratch (no pretrained weights) on {data.get('train_images', '?')} images: it has learned only what these "
            "images show and generalises less than a model fine-tuned from ImageNet weights."
        )
    found.append(
        f"Data domain: it has seen only the images in `{data.get('path', '?')}`; on images from elsewhere its accuracy is unknown "
        "until measured."
    )
    return found


def version_lines(meta: dict[str, Any]) -> list[str]:
    versions = meta.get("versions", {})
    model = (meta.get("config") or {}).get("model") or {}
    lines = ["## Versions and provenance", ""]
    lines.append(
        "- model: "
        + ", ".join(
            f"{key} {value}" for key, value in (
                ("backbone", meta.get("backbone")), ("alpha", model.get("alpha")), ("input size", image_size_text(meta["preprocessing"])),
                ("weights", model.get("weights")), ("quantization", meta.get("quantization_mode") or "none"),
            ) if value is not None
        )
    )
    lines += [f"- {name}: {version}" for name, version in versions.items()]
    runtimes = sorted({(e.get("runtime"), e.get("runtime_version")) for e in meta.get("latency", []) if e.get("runtime_version")})
    lines += [f"- runtime measured: {_RUNTIME_NAMES.get(r, r)} {v}" for r, v in runtimes]
    if meta.get("fingerprint"):
        lines.append(f"- build fingerprint: `{meta['fingerprint']}` (the resolved configuration is `config` in `edgetl.json`)")
    return [*lines, ""]


def render_model_card(meta: dict[str, Any]) -> str:
    """The ``MODEL_CARD.md`` text of a build, from its ``edgetl.json`` contents."""
    edgetl_version = meta.get("versions", {}).get("edgetl", "")
    lines = [
        f"# Model card: {meta.get('name', '')} / {meta['target']}",
        "",
        f"Written by edgetl {edgetl_version} from this build's results (`edgetl.json`): every figure below was measured in the build.",
        "",
        *intended_use_lines(meta),
        *data_lines(meta),
        *metrics_lines(meta),
        *int8_lines(meta),
        *latency_lines(meta),
        "## Limitations",
        "",
        *[f"- {item}" for item in limitations(meta)],
        "",
        *version_lines(meta),
    ]
    return "\n".join(lines)
