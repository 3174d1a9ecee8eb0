"""Issue 12, "keep it caught": mutated .tflite and .onnx files through inspect, predict, eval and package.

Each file must give a clean result or a one-line error with a non-zero exit: no traceback, no death
by signal, no hang. One worker process per command calls the CLI in-process file after file (the
runtime probes protect it); a worker that dies or stalls is reported with the file it was on.
``benchmarks/fuzz.py`` runs the same at 2,000+ files.
"""

from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import MUTATIONS, make_inputs, make_seed_models, mutants, run_command, write_corpus

#: Mutated files in the default suite (plus an empty file and a folder per suffix).
FILES = 200
COMMANDS = ("inspect", "predict", "eval", "package")


def test_mutations_are_seeded_and_change_the_file():
    seeds = {"a.tflite": bytes(range(256)) * 8}
    first, again = list(mutants(seeds, 24, seed=3)), list(mutants(seeds, 24, seed=3))
    assert first == again
    assert {name.split("-")[1] for name, _ in first} == set(MUTATIONS)
    assert sum(data != seeds["a.tflite"] for _, data in first) >= len(first) - 2  # a splice may copy a region onto its twin


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    seeds, sidecar = make_seed_models(work / "seeds")
    paths = write_corpus(seeds, work / "corpus", FILES, seed=12, sidecar=sidecar)
    return work, paths, make_inputs(work)


def test_every_mutated_file_is_a_result_or_one_line_error(corpus):
    work, paths, extra = corpus
    assert len(paths) == FILES + 4 and any(p.is_dir() for p in paths) and any(p.stat().st_size == 0 for p in paths if p.is_file())
    with ThreadPoolExecutor(2) as pool:
        futures = {c: pool.submit(run_command, c, paths, work / "runs", extra, file_timeout=60, python=sys.executable) for c in COMMANDS}
        results = {c: f.result() for c, f in futures.items()}
    counts = {c: Counter(r["outcome"] for r in rows) for c, rows in results.items()}
    bad = [f"{c} {r['outcome']} {Path(r['file']).parent.name}: {r['message']}" for c, rows in results.items() for r in rows if r["outcome"] not in ("ok", "error")]
    assert not bad, f"{counts}\n" + "\n".join(bad[:20])
    for command, rows in results.items():
        assert len(rows) == len(paths)
        assert counts[command]["error"] >= 4, counts  # at least the empty files and folders are refused
        assert all(r["exit_code"] != 0 for r in rows if r["outcome"] == "error")
    # the unmutated seeds' neighbours (e.g. garbage appended to an .onnx) still work: the corpus reaches the runtimes
    assert sum(counts[c]["ok"] for c in COMMANDS) > 0, counts
