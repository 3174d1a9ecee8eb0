"""``edgetl select`` end to end on a tiny generated folder: two real candidates probed on two dask
workers, exported to int8, timed with the ``edgetl bench`` harness, marked against a flash budget,
and the report opened in headless Chromium; plus the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, chromium, headless, html_elements, run_cli
from tests.unit.bench.test_bench_remote import sshd  # noqa: F401 - the real sshd fixture, shared

#: Between the int8 files of MobileNetV2 0.35 (~605 KiB) and 0.5 (~800 KiB) at 32 px with a 4-class head.
FLASH_BUDGET = "700KB"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from edgetl.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path_factory.mktemp("select-data") / "shapes", images_per_class=16, image_size=32, seed=0,
        noise=0.05, min_scale=0.5, palette="light-on-dark",
    )


@pytest.fixture(scope="module")
def selected(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "out"
    result = run_cli(
        "select", "--data", tiny_data, "--candidates", "mobilenet_v2:0.35,0.5@32", "--weights", "none",
        "--flash-budget", FLASH_BUDGET, "--runs", 20, "--warmup", 2, "--probe-epochs", 5, "--out", out,
    )
    return result, out


def test_select_measures_real_figures_and_recommends_the_fitting_candidate(selected, tiny_data):
    result, out = selected
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "select.json").read_text())
    assert record["kind"] == "edgetl-select" and record["settings"]["engine"] == {"engine": "in-process", "workers": 1}
    bench = json.loads((out / "bench-local.json").read_text())
    timed = {Path(a["path"]).parent.name: a["results"][0]["stats"] for a in bench["artifacts"]}
    by_key = {e["key"]: e for e in record["candidates"]}
    assert set(by_key) == {"mobilenet_v2-a0.35-32", "mobilenet_v2-a0.5-32"}
    for key, entry in by_key.items():
        assert 0.0 <= entry["probe"]["top1"] <= 1.0 and 0.0 <= entry["int8"]["top1"] <= 1.0
        assert entry["weights"]["used"] == "none"
        model = out / entry["int8"]["file"]
        assert model.is_file() and model.stat().st_size == entry["size_bytes"] and model.read_bytes()[4:8] == b"TFL3"
        assert json.loads((model.parent / "edgetl.json").read_text())["target"] == "tflite-int8"
        # the latency is the bench harness's own figure for this very file
        local = entry["latency"]["local"]
        assert local["p50_ms"] > 0 and local["p50_ms"] == timed[key]["p50_ms"] and local["p90_ms"] == timed[key]["p90_ms"]
        assert entry["timings"]["job_s"] > 0
    small, large = by_key["mobilenet_v2-a0.35-32"], by_key["mobilenet_v2-a0.5-32"]
    assert small["size_bytes"] < 700 * 1024 < large["size_bytes"], (small["size_bytes"], large["size_bytes"])
    assert small["within_budget"] and small["over_budget"] == []
    assert not large["within_budget"] and len(large["over_budget"]) == 1 and large["over_budget"][0].endswith(" KiB > flash 700 KiB")
    command = f"edgetl build --data {tiny_data} --model mobilenet_v2 --alpha 0.35 --input-size 32 --weights none --target tflite-int8"
    rule = record["recommendation"].pop("rule")
    assert record["recommendation"] == {"key": small["key"], "label": small["label"], "command": command}
    assert f"within one held-out image ({100 / record['val_images']:.2f} pts) are a tie" in rule
    assert record["no_fit"] is None
    flat = " ".join(result.output.split())
    assert command in flat and "recommended: mobilenet_v2 0.35 @32" in flat
    assert "flash" in result.output and "recommen" in result.output  # the table's verdicts (rich wraps the cells)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert command in page and "data:image/png;base64," in page and "http://" not in page and "https://" not in page



def test_report_renders_in_headless_chromium(selected, tmp_path):
    _, out = selected
    browser = chromium()
    result = headless(browser, "--window-size=1200,2000", "--dump-dom", (out / "report.html").resolve().as_uri(), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = html_elements(result.stdout)
    check = next((a for t, a in found if t == "p" and a.get("id") == "plot-check"), None)
    assert check is not None, "report.html did not load in Chromium: " + result.stdout[:500]
    assert check.get("data-found") == check.get("data-rendered") == check.get("data-expected") == "1", check
    assert int(check["data-page-width"]) <= int(check["data-viewport-width"]), f"the page scrolls sideways: {check}"
    assert any(t == "table" and a.get("id") == "candidates" for t, a in found)


def test_no_fit_prints_the_table_then_one_line_naming_the_closest(selected, tiny_data, tmp_path, monkeypatch):
    """The CLI's side of "nothing fits": the measured table, then the API's one-line error, a non-zero exit."""
    from edgetl.core.errors import BudgetError
    from edgetl.pipeline import api

    _, measured = selected
    record = json.loads((measured / "select.json").read_text())
    record.update(recommendation=None, no_fit={"closest": "mobilenet_v2-a0.35-32", "message": "no candidate fits"})
    out = tmp_path / "nofit"

    def no_fit(config, folder, **_):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "select.json").write_text(json.dumps(record))
        raise BudgetError("no candidate fits the budgets; the closest is mobilenet_v2 0.35 @32: p50 0.08 ms > 0.01 ms on local")

    monkeypatch.setattr(api, "select", no_fit)
    result = run_cli("select", "--data", tiny_data, "--candidates", "mobilenet_v2:0.35@32", "--budget-ms", "0.01", "--out", out)
    assert_one_line_error(result, "the closest is mobilenet_v2 0.35 @32", "> 0.01 ms on local")
    assert "mobilenet_v2 0.35" in " ".join(result.output.split())  # the table came first


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--candidates", "resnet50@224"], ["unknown backbone 'resnet50'", "known backbones:"]),
        (["--candidates", "mobilenet_v2:0.3@96"], ["alpha '0.3' is not available"]),
        (["--candidates", "mobilenet_v2:0.35@96", "--on", "nowhere"], ["Received board 'nowhere'", "arm64-emulated"]),
        (["--candidates", "mobilenet_v2:0.35@96", "--budget-ms", "-1"], ["--budget-ms -1"]),
        (["--candidates", "mobilenet_v2:0.35@96", "--ram-budget", "lots"], ["--ram-budget 'lots'"]),
        (["--candidates", "mobilenet_v2:0.35@96", "--workers", "0"], ["--workers must be at least 1"]),
    ],
)
def test_bad_options_are_one_line_errors(tiny_data, tmp_path, args, fragments):
    result = run_cli("select", "--data", tiny_data, "--out", tmp_path / "out", *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_two_boards_give_one_column_each(tiny_data, sshd, tmp_path):  # noqa: F811 - the shared sshd fixture
    """``--on local --on ssh://...``: every candidate timed on both (the board a real sshd on loopback), one
    table column and one bench document per board."""
    import sys

    url = f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"
    out = tmp_path / "two"
    result = run_cli(
        "select", "--data", tiny_data, "--candidates", "mobilenet_v2:0.35@32", "--weights", "none", "--probe-epochs", 2,
        "--runs", 5, "--warmup", 1, "--on", "local", "--on", url, "--identity", sshd["key"], "--known-hosts", sshd["known_hosts"],
        "--remote-python", sys.executable, "--out", out,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "select.json").read_text())
    assert [b["label"] for b in record["boards"]] == ["local", url]
    (entry,) = record["candidates"]
    assert set(entry["latency"]) == {"local", url} and all(entry["latency"][b]["p50_ms"] > 0 for b in ("local", url))
    from edgetl.pipeline.select_report import table_headers

    assert [h for h in table_headers(record) if h.startswith("p50")] == ["p50 / p90 ms (local)", f"p50 / p90 ms ({url})"]
    assert len(list(out.glob("bench-*.json"))) == 2
