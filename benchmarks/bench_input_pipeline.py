"""edgetl's input pipeline vs the tutorial's, and the input pipeline vs the model it feeds.

The data: JPEG photos on disk made offline from the photos bundled with scikit-image (six
classes, random crops of random size, saved ``--photo-width`` px wide +-20 % (default 400; a phone
photo is about 4000), JPEG quality 90), decoded to ``--size`` px. The model: MobileNetV2 alpha 0.35 at ``--size``
px, ``weights=None`` (no download here; speed does not depend on the weights), a softmax head, and
phase-2-like training: every backbone layer from ``block_13_expand`` up trainable (BatchNorm kept in
inference mode), the rest frozen; Adam, batch ``--batch``.

Measured, each after one warm-up epoch (graph tracing, file cache), over ``--epochs`` epochs:

(a) phase-2 training images/s with
    * edgetl: :func:`edgetl.data.split.load_split` (decode cache warm: a memory map) +
      :func:`edgetl.ml.phases.make_dataset` (streamed rows, augmentation on tensors in parallel
      ``map`` calls, prefetch) + ``model.fit``;
    * the tutorial (tensorflow.org "Transfer learning and fine-tuning"):
      ``tf_keras.utils.image_dataset_from_directory(...).prefetch(AUTOTUNE)``, the same
      augmentation layers at the start of the model, + ``model.fit``;
(b) the input pipeline alone (batches iterated, no model) vs the model's training step on one
    pre-made batch repeated (no input cost): ``pipeline / model`` >= 3 means the model, not the
    input, sets the pace.

Usage::

    python benchmarks/bench_input_pipeline.py [--per-class 150] [--photo-width 400] [--size 96] [--batch 32] [--epochs 3] [--out benchmarks/out]

Prints a Markdown section (with the command) and writes ``<out>/input_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/...` finds edgetl

SOURCES = ("brick", "grass", "gravel", "moon", "coins", "coffee")
FIRST_TRAINABLE = "block_13_expand"


def make_jpeg_folder(out: Path, per_class: int, seed: int = 0, width: int = 400) -> Path:
    """``out/<class>/*.jpg``: random crops of each scikit-image photo, ``width`` +-20 % px wide, JPEG quality 90."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in SOURCES:
        photo = np.asarray(getattr(skimage.data, name)())
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        photo = np.ascontiguousarray(photo[:, :, :3]).astype(np.uint8)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        height, width = photo.shape[:2]
        for i in range(per_class):
            side = int(min(height, width) * rng.uniform(0.4, 0.9))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
            w = int(rng.integers(int(width * 0.8), int(width * 1.2) + 1))
            crop.resize((w, int(w * rng.uniform(0.66, 1.0))), Image.Resampling.BICUBIC).save(folder / f"{name}_{i:04d}.jpg", quality=90)
    return out


def build_model(size: int, classes: int, augment_in_model: bool, seed: int = 0):
    """MobileNetV2 0.35, phase-2 trainable top; the tutorial's variant has augmentation and scaling inside."""
    from edgetl.ml._keras import keras
    from edgetl.ml.phases import augmenter

    k = keras()
    k.utils.set_random_seed(seed)
    base = k.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None, pooling="avg")
    trainable = False
    for layer in base.layers:
        trainable = trainable or layer.name == FIRST_TRAINABLE
        layer.trainable = trainable and not isinstance(layer, k.layers.BatchNormalization)
    inputs = k.Input((size, size, 3))
    x = inputs
    if augment_in_model:  # the tutorial: augmentation and scaling are model layers, raw 0..255 pixels in
        x = augmenter(seed)(x)
        x = k.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = base(x, training=False)
    outputs = k.layers.Dense(classes, activation="softmax")(x)
    model = k.Model(inputs, outputs)
    model.compile(optimizer=k.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    return model


class EpochTimer:
    def __init__(self):
        from edgetl.ml._keras import keras

        timer = self

        class _Callback(keras().callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.seconds.append(time.perf_counter() - timer.start)

        self.start = 0.0
        self.seconds: list[float] = []
        self.callback = _Callback()


def fit_rate(model, dataset, images_per_epoch: int, epochs: int) -> dict:
    """Images/s of ``model.fit`` over ``epochs`` epochs after one warm-up epoch (median epoch)."""
    timer = EpochTimer()
    model.fit(dataset, epochs=1 + epochs, verbose=0, callbacks=[timer.callback])
    timed = timer.seconds[1:]
    return {"images_per_s": images_per_epoch / statistics.median(timed), "epoch_s": [round(s, 3) for s in timer.seconds]}


def iterate_rate(dataset, epochs: int) -> dict:
    """Images/s of iterating ``dataset`` (no model) over ``epochs`` epochs after one warm-up epoch."""
    seconds, count = [], 0
    for epoch in range(1 + epochs):
        start, count = time.perf_counter(), 0
        for x, _ in dataset:
            count += int(x.shape[0])
        if epoch:
            seconds.append(time.perf_counter() - start)
    return {"images_per_s": count / statistics.median(seconds), "epoch_s": [round(s, 3) for s in seconds]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=150, help="JPEG files per class (6 classes)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--photo-width", type=int, default=400, help="JPEG width in px (+-20 %%; phone photos: 4000)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("edgetl.data.folder").setLevel(logging.ERROR)

    import tensorflow as tf

    from edgetl.core.config import DataConfig
    from edgetl.core.contract import PreprocessContract
    from edgetl.data.split import load_split
    from edgetl.ml._keras import keras
    from edgetl.ml.phases import make_dataset

    k = keras()
    work = Path(tempfile.mkdtemp(prefix="edgetl-bench-input-"))
    os.environ["EDGETL_CACHE_DIR"] = str(work / "cache")  # a cold cache of our own: the first load is a miss
    folder = make_jpeg_folder(work / "photos", args.per_class, width=args.photo_width)
    n = args.per_class * len(SOURCES)
    contract = PreprocessContract(input_size=args.size)
    data = DataConfig(path=folder, val_path=folder, batch_size=args.batch)  # every image is a training image

    start = time.perf_counter()
    load_split(data, args.size)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    split = load_split(data, args.size)
    warm_s = time.perf_counter() - start
    assert isinstance(split.train.x, np.memmap) and len(split.train) == n

    results: dict = {"images": n, "photo_width": args.photo_width, "size": args.size, "batch": args.batch, "timed_epochs": args.epochs}
    results["decode_cache"] = {"cold_load_s": round(cold_s, 3), "warm_load_s": round(warm_s, 3)}

    def edgetl_dataset():
        return make_dataset(split.train, contract, args.batch, shuffle=True, augment=True, seed=0)

    def tutorial_dataset():
        ds = k.utils.image_dataset_from_directory(
            folder, image_size=(args.size, args.size), batch_size=args.batch, shuffle=True, seed=0
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    # (b) the input pipelines alone, and the model's step on pre-made tensors
    results["pipeline_alone"] = iterate_rate(edgetl_dataset(), args.epochs)
    results["tutorial_pipeline_alone"] = iterate_rate(tutorial_dataset(), args.epochs)
    model = build_model(args.size, len(SOURCES), augment_in_model=False)
    x, y = next(iter(edgetl_dataset()))
    steps = -(-n // args.batch)
    premade = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    results["model_alone"] = fit_rate(model, premade, steps * args.batch, args.epochs)

    # (a) phase-2 training end to end
    results["edgetl_fit"] = fit_rate(model, edgetl_dataset(), n, args.epochs)
    tutorial_model = build_model(args.size, len(SOURCES), augment_in_model=True)
    results["tutorial_fit"] = fit_rate(tutorial_model, tutorial_dataset(), n, args.epochs)

    rate = {key: results[key]["images_per_s"] for key in ("pipeline_alone", "tutorial_pipeline_alone", "model_alone", "edgetl_fit", "tutorial_fit")}
    results["ratios"] = {
        "edgetl_fit_over_tutorial_fit": rate["edgetl_fit"] / rate["tutorial_fit"],
        "pipeline_over_model": rate["pipeline_alone"] / rate["model_alone"],
        "tutorial_pipeline_over_model": rate["tutorial_pipeline_alone"] / rate["model_alone"],
        "edgetl_fit_over_model_alone": rate["edgetl_fit"] / rate["model_alone"],
    }
    results["pipeline_is_3x_model"] = results["ratios"]["pipeline_over_model"] >= 3.0
    results["machine"] = {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
    results["command"] = "python benchmarks/bench_input_pipeline.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "input_pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return results


def markdown(r: dict) -> str:
    ratios = r["ratios"]
    rows = [
        ("phase-2 fit, edgetl (decode cache + make_dataset)", r["edgetl_fit"]["images_per_s"]),
        ("phase-2 fit, tutorial (image_dataset_from_directory, augmentation in the model)", r["tutorial_fit"]["images_per_s"]),
        ("input pipeline alone, edgetl (with augmentation)", r["pipeline_alone"]["images_per_s"]),
        ("input pipeline alone, tutorial (decodes every JPEG every epoch; its augmentation is in the model)", r["tutorial_pipeline_alone"]["images_per_s"]),
        ("model training step alone (one pre-made batch repeated)", r["model_alone"]["images_per_s"]),
    ]
    lines = [
        "## Input pipeline: edgetl vs the tutorial, and pipeline vs model",
        "",
        f"{r['images']} JPEG photos ({r['photo_width']} px wide +-20 %, 6 classes) -> {r['size']} px, MobileNetV2 alpha 0.35, phase-2 trainable top "
        f"(from {FIRST_TRAINABLE}), batch {r['batch']}, median of {r['timed_epochs']} epochs after a warm-up epoch; "
        f"{r['machine']['affinity']} CPU cores, TensorFlow {r['machine']['tensorflow']}, GPUs: {r['machine']['gpus'] or 'none'}.",
        "",
        "| what | images/s |",
        "|---|---:|",
        *[f"| {name} | {value:.0f} |" for name, value in rows],
        "",
        f"- phase-2 training, edgetl / tutorial: **{ratios['edgetl_fit_over_tutorial_fit']:.2f}x**",
        f"- edgetl input pipeline / model step: **{ratios['pipeline_over_model']:.1f}x** "
        f"({'>=' if r['pipeline_is_3x_model'] else 'UNDER'} 3x: the model is the bottleneck"
        f"{'' if r['pipeline_is_3x_model'] else ' NOT shown'}); the tutorial's pipeline / model step: {ratios['tutorial_pipeline_over_model']:.1f}x",
        f"- edgetl's fit reaches {ratios['edgetl_fit_over_model_alone']:.0%} of the model's own step rate "
        "(both share the same cores, so the pipeline's work is not free)",
        f"- decode cache: first load (decode + write) {r['decode_cache']['cold_load_s']:.2f} s, "
        f"warm load (stat + map) {r['decode_cache']['warm_load_s']:.2f} s",
        "",
        f"Command: `{r['command']}`",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
