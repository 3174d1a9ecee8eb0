"""QAT int8 vs PTQ int8 image by image: for each edgetl build folder (one holding ``tflite-int8/``
and ``ptq-int8/``, as ``edgetl build --target tflite-int8`` writes), the validation images only
one of the two int8 files gets right, and an exact two-sided McNemar test on them. A difference
of one image in top-1 is not a difference between the two methods; this says whether there is one.

Usage:
    PYTHONPATH=. python benchmarks/paired_int8.py benchmarks/out/hard48/build/mobilenet_v2 [MORE ...]
"""

from __future__ import annotations

import argparse
from math import comb
from pathlib import Path

import numpy as np


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value (binomial test of the discordant pairs at 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n)


def compare(build: Path) -> dict:
    from edgetl.core.config import validate
    from edgetl.core.metadata import read_model_info
    from edgetl.data.split import load_split
    from edgetl.runtime.litert import LiteRTModel

    info = read_model_info(build / "tflite-int8")
    meta, contract = info.extra, info.contract
    split = load_split(validate(meta["config"], str(build)).data, contract.input_size)
    x, y = contract.normalize(split.val.x), split.val.y
    right = {name: LiteRTModel(build / name / "model.tflite").predict(x).argmax(1) == y for name in ("tflite-int8", "ptq-int8")}
    only_qat = int(np.sum(right["tflite-int8"] & ~right["ptq-int8"]))
    only_ptq = int(np.sum(~right["tflite-int8"] & right["ptq-int8"]))
    return {
        "build": str(build), "images": int(len(y)), "qat_int8_top1": float(right["tflite-int8"].mean()),
        "ptq_int8_top1": float(right["ptq-int8"].mean()), "only_qat_right": only_qat, "only_ptq_right": only_ptq,
        "mcnemar_p": mcnemar_exact(only_qat, only_ptq),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", type=Path)
    args = parser.parse_args()
    for build in args.builds:
        r = compare(build)
        print(f"{r['build']}: QAT int8 {r['qat_int8_top1']:.2%}, PTQ int8 {r['ptq_int8_top1']:.2%} on {r['images']} images; "
              f"only QAT right {r['only_qat_right']}, only PTQ right {r['only_ptq_right']}, exact McNemar p = {r['mcnemar_p']:.3f}")


if __name__ == "__main__":
    main()
