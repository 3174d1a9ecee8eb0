"""``edgetl compare --equivalence``: noise-level differences read as equivalent, and the band is stated."""

from __future__ import annotations

import json

import numpy as np

from edgetl.bench.stats import BENCH_KIND, SCHEMA_VERSION
from tests.helpers import assert_one_line_error, run_cli


def _bench_file(path, samples):
    doc = {"schema_version": SCHEMA_VERSION, "kind": BENCH_KIND, "machine": {"cpu": "test cpu"},
           "artifacts": [{"label": "m.onnx", "results": [{"threads": 1, "samples_ms": list(samples)}]}]}
    path.write_text(json.dumps(doc))
    return path


def test_compare_same_file_reads_equivalent_and_states_the_band(tmp_path):
    base = 1.0 + np.random.default_rng(0).gamma(2.0, 0.01, 400)
    a = _bench_file(tmp_path / "a.json", base)
    b = _bench_file(tmp_path / "b.json", base * 1.01)  # a 1% shift: what two runs of one file show
    result = run_cli("compare", a, b)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "equivalent (within ±3%)" in out and "within ±3%" in out and "slower" not in out
    as_json = json.loads(run_cli("compare", a, b, "--json").stdout)
    assert as_json["equivalence"] == 0.03 and as_json["comparisons"][0]["status"] == "equivalent"
    strict = run_cli("compare", a, b, "--equivalence", "0.5%")
    assert strict.exit_code == 0 and "B is 1.01x slower" in strict.stdout and "±0.5%" in " ".join(strict.stdout.split())
    edge = run_cli("compare", a, _bench_file(tmp_path / "c.json", base * 1.03))
    assert edge.exit_code == 0 and "inconclusive (" in edge.stdout and "crosses an edge" in " ".join(edge.stdout.split())


def test_compare_refuses_a_bad_equivalence(tmp_path):
    a = _bench_file(tmp_path / "a.json", [1.0, 1.1, 1.2])
    assert_one_line_error(run_cli("compare", a, a, "--equivalence", "lots"), "--equivalence")
