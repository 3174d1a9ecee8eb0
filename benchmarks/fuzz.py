"""Fuzz edgetl's model-reading commands with thousands of mutated .tflite and .onnx files.

    python benchmarks/fuzz.py --files 2000 [--seed 0] [--commands inspect,predict,eval,package]

Seed models are small real ones (TensorFlow's converter for the int8 .tflite, the onnx helper for the
.onnx); the mutations (bit flips, truncation, zeroed regions, inflated or shifted integers, NaN floats,
garbage appended, spliced regions, an empty file, a folder named like a model) are in
tests/helpers.py, shared with the default-suite test tests/unit/runtime/test_security_fuzz.py. Each file
goes through each command in a worker process that calls the CLI in-process; the counts per command
and outcome are printed (ok and error are the acceptable outcomes; noisy-error, traceback, crash and
hang are defects, listed by file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import OUTCOMES, make_inputs, make_seed_models, run_command, write_corpus  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="mutated files (half .tflite, half .onnx), plus 4 special cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default="inspect,predict,eval,package")
    parser.add_argument("--jobs", type=int, default=2, help="commands run at once")
    parser.add_argument("--file-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="write every outcome here")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgetl-fuzz-") as tmp:
        work = Path(tmp)
        seeds, sidecar = make_seed_models(work / "seeds")
        extra = make_inputs(work)
        paths = write_corpus(seeds, work / "corpus", args.files, args.seed, sidecar=sidecar)
        commands = args.commands.split(",")
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {c: pool.submit(run_command, c, paths, work / "runs", extra, file_timeout=args.file_timeout, python=sys.executable) for c in commands}
            results = {c: f.result() for c, f in futures.items()}
    elapsed = time.monotonic() - started
    print(f"{len(paths)} files ({args.files} mutants + 4 special cases, seed {args.seed}), {elapsed:.0f} s")
    print(f"{'command':<10}" + "".join(f"{o:>13}" for o in OUTCOMES))
    bad = []
    for command, rows in results.items():
        counts = Counter(r["outcome"] for r in rows)
        print(f"{command:<10}" + "".join(f"{counts.get(o, 0):>13}" for o in OUTCOMES))
        bad += [(command, r) for r in rows if r["outcome"] not in ("ok", "error")]
    for command, row in bad[:50]:
        print(f"DEFECT {command} {row['outcome']}: {Path(row['file']).parent.name}: {row['message']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
