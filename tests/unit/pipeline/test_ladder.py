"""The quantization ladder (edgetl.pipeline.ladder, ``build --target auto``): the choice on given figures,
early stopping, the no-fit error, the config checks, and one small real ladder through the CLI."""

from __future__ import annotations

import json

import pytest

from edgetl.core.errors import BudgetError, ConfigError
from edgetl.pipeline.ladder import (
    RUNG_BY_NAME,
    RUNGS,
    Budgets,
    Figures,
    check_ladder_config,
    choose,
    no_fit_message,
    skip_reason,
)
from tests.helpers import chromium, headless, html_elements, run_cli


def fig(variant: str, p50: float | None, drop: float = 0.0, *, threads: int = 1, top1: float | None = None, size: int = 1000, arena: int | None = None) -> Figures:
    label = RUNG_BY_NAME[variant].label if variant in RUNG_BY_NAME else variant
    return Figures(variant, label, threads, p50, 0.9 - drop / 100 if top1 is None else top1, drop, 0.5, size, arena)


# ----------------------------------------------------------------------------- the rungs
def test_rungs_are_data_in_cheapest_to_make_order():
    names = [rung.name for rung in RUNGS]
    assert names[:8] == ["dynamic-range", "fp16", "fp32", "int8-ptq", "int16x8", "onnx-fp32", "onnx-int8", "int8-qat"]
    assert [rung.keep_float for rung in RUNGS if rung.source == "selective"] == [1, 2, 4]
    assert RUNG_BY_NAME["int8-qat"].cost > RUNG_BY_NAME["int8-ptq"].cost > RUNG_BY_NAME["fp32"].cost
    assert {rung.name for rung in RUNGS if rung.full_int8} == {"int8-ptq", "onnx-int8", "int8-qat"}


# ----------------------------------------------------------------------------- the choice
def test_fastest_variant_meeting_every_budget_wins_and_others_say_why():
    figures = [fig("fp32", 7.4), fig("fp16", 7.2), fig("int8-ptq", 1.1, drop=2.3), fig("int8-qat", 1.2, drop=0.4), fig("onnx-fp32", 4.0, drop=0.0)]
    choice = choose(figures, Budgets(max_drop=1.0, budget_ms=5.0))
    assert choice.winner.variant == "int8-qat"
    reasons = {row["variant"]: row["reason"] for row in choice.rows}
    assert reasons["int8-ptq"] == "int8 PTQ: drop 2.3 pts > 1"
    assert reasons["fp32"] == "fp32: p50 7.4 ms > 5 ms"
    assert reasons["onnx-fp32"] == "ONNX fp32: meets every budget, but p50 4 ms, slower than int8 QAT's 1.2 ms"
    assert [row["status"] for row in choice.rows].count("chosen") == 1


def test_several_budgets_missed_are_all_named():
    choice = choose([fig("fp32", 9.0, drop=3.0, size=4 << 20)], Budgets(max_drop=1.0, budget_ms=5.0, flash_bytes=1 << 20))
    assert choice.winner is None
    assert choice.rows[0]["reason"] == "fp32: drop 3.0 pts > 1; p50 9 ms > 5 ms; size 4 MiB > 1 MiB"


def test_ties_go_to_accuracy_then_size():
    budgets = Budgets(max_drop=1.0, budget_ms=5.0)
    by_accuracy = choose([fig("fp16", 2.0, top1=0.80), fig("fp32", 2.0, top1=0.85)], budgets)
    assert by_accuracy.winner.variant == "fp32"
    assert "top-1 80.0% < 85.0%" in by_accuracy.rows[0]["reason"]
    by_size = choose([fig("fp32", 2.0, top1=0.85, size=4000), fig("fp16", 2.0, top1=0.85, size=2000)], budgets)
    assert by_size.winner.variant == "fp16"
    assert "larger" in by_size.rows[0]["reason"]
    # p50s within timing noise (2%) are a tie too; beyond it the faster one wins whatever its accuracy
    assert choose([fig("fp32", 2.00, top1=0.80), fig("fp16", 2.03, top1=0.85)], budgets).winner.variant == "fp16"
    assert choose([fig("fp32", 2.00, top1=0.80), fig("fp16", 2.20, top1=0.85)], budgets).winner.variant == "fp32"


def test_thread_counts_are_rows_of_one_variant():
    figures = [fig("int8-ptq", 3.0, threads=1), fig("int8-ptq", 1.5, threads=4), fig("fp32", 6.0, threads=1), fig("fp32", 4.8, threads=4)]
    choice = choose(figures, Budgets(max_drop=1.0, budget_ms=5.0))
    assert (choice.winner.variant, choice.winner.threads) == ("int8-ptq", 4)
    assert choice.rows[2]["reason"] == "fp32 @1 thread: p50 6 ms > 5 ms"
    assert choice.rows[3]["name"] == "fp32 @4 threads"


def test_unmeasured_budgets_are_not_met():
    choice = choose([fig("onnx-int8", 1.0, arena=None), fig("int8-ptq", 2.0, arena=200 * 1024)], Budgets(max_drop=1.0, ram_bytes=256 * 1024))
    assert choice.winner.variant == "int8-ptq"
    assert "tensor arena not measured" in choice.rows[0]["reason"]


def test_no_fit_names_the_closest_variant_and_the_budget_it_misses(tmp_path):
    figures = [fig("fp32", 7.4), fig("int8-ptq", 1.0, drop=2.3), fig("dynamic-range", 30.0, drop=5.0)]
    choice = choose(figures, Budgets(max_drop=1.0, budget_ms=5.0))
    assert choice.winner is None and choice.closest.variant == "fp32"  # one budget missed, by less (48% vs 130%)
    message = no_fit_message(choice, tmp_path / "ladder.json")
    assert "\n" not in message
    assert "the closest, fp32, misses --budget-ms (p50 7.4 ms > 5 ms)" in message
    assert str(tmp_path / "ladder.json") in message
    assert issubclass(BudgetError, Exception)


# ----------------------------------------------------------------------------- early stopping
def test_qat_skipped_when_ptq_already_passes():
    reason = skip_reason(RUNG_BY_NAME["int8-qat"], [fig("int8-ptq", 1.0, drop=0.5)], Budgets(max_drop=1.0, budget_ms=5.0), {"int8-ptq"})
    assert reason is not None and "int8 PTQ already meets every budget" in reason


def test_qat_skipped_when_ptq_is_over_the_latency_budget():
    figures = [fig("int8-ptq", 8.0, drop=3.0, threads=1), fig("int8-ptq", 6.0, drop=3.0, threads=2)]
    reason = skip_reason(RUNG_BY_NAME["int8-qat"], figures, Budgets(max_drop=1.0, budget_ms=5.0), {"int8-ptq"})
    assert reason is not None and "6 ms > 5 ms" in reason


def test_qat_made_when_ptq_misses_only_accuracy_or_was_not_measured():
    budgets = Budgets(max_drop=1.0, budget_ms=5.0)
    assert skip_reason(RUNG_BY_NAME["int8-qat"], [fig("int8-ptq", 1.0, drop=3.0)], budgets, {"int8-ptq"}) is None
    assert skip_reason(RUNG_BY_NAME["int8-qat"], [fig("fp32", 1.0)], budgets, {"fp32"}) is None


def test_selective_only_when_no_full_int8_passes_and_int8_is_fast_enough():
    budgets = Budgets(max_drop=1.0, budget_ms=5.0)
    one = RUNG_BY_NAME["selective-int8-1"]
    assert "already meets" in skip_reason(one, [fig("int8-ptq", 4.0, drop=3.0), fig("int8-qat", 4.0, drop=0.2)], budgets, set())
    assert "no faster" in skip_reason(one, [fig("int8-ptq", 6.0, drop=3.0)], budgets, set())
    assert skip_reason(one, [fig("int8-ptq", 4.0, drop=3.0), fig("int8-qat", 4.0, drop=2.0)], budgets, set()) is None
    done = [fig("int8-ptq", 4.0, drop=3.0), fig("selective-int8-1", 4.5, drop=0.5)]
    assert "more float layers cannot be faster" in skip_reason(RUNG_BY_NAME["selective-int8-2"], done, budgets, {"selective-int8-1"})
    assert "no --max-drop" in skip_reason(one, [], Budgets(budget_ms=5.0), set())
    assert skip_reason(RUNG_BY_NAME["fp32"], [fig("int8-ptq", 1.0)], budgets, {"int8-ptq"}) is None  # not provable: measured


# ----------------------------------------------------------------------------- configuration
def test_ladder_flags_need_target_auto_and_auto_needs_max_drop(tmp_path):
    from tests.helpers import tiny_config

    with pytest.raises(ConfigError, match=r"Received --max-drop, --budget-ms with --target tflite-int8.*pass --target auto"):
        check_ladder_config(tiny_config(tmp_path, ladder={"max_drop": 1.0, "budget_ms": 5.0}))
    with pytest.raises(ConfigError, match="without --max-drop"):
        check_ladder_config(tiny_config(tmp_path, target="auto", ladder={"budget_ms": 5.0}))
    with pytest.raises(ConfigError, match="the ladder's rungs are dynamic-range"):
        check_ladder_config(tiny_config(tmp_path, target="auto", ladder={"max_drop": 1.0, "variants": ["int4"]}))
    check_ladder_config(tiny_config(tmp_path))  # no ladder, another target: fine
    assert tiny_config(tmp_path).to_toml_dict().get("ladder") is None  # off by default: the resolved config is unchanged


def test_cli_rejects_ladder_flags_without_auto_in_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    result = run_cli("build", "--data", tmp_path / "data", "--weights", "none", "--max-drop", "1", "--dry-run")
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--max-drop" in lines[0] and "--target auto" in lines[0]


# ----------------------------------------------------------------------------- a real, small ladder
TINY_TOML = """
[model]
name = "mobilenet_v2"
alpha = 0.35
input_size = 32
weights = "none"
[data]
val_split = 0.25
seed = 0
batch_size = 16
[train]
head_epochs = 1
fine_tune_epochs = 0
augment = false
clean_epochs = 0
[export]
representative_samples = 8
[bench]
warmup = 1
runs = 5
"""


def test_real_ladder_through_the_cli(tmp_path):
    """Train a tiny model, run a 3-rung ladder on this machine, ship the winner; then budgets nothing meets:
    a one-line error, exit non-zero, the measured ladder still written."""
    from edgetl.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", images_per_class=12, image_size=32, seed=0)
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    common = ["build", "--data", data, "--config", tmp_path / "tiny.toml", "--out", tmp_path / "out", "--target", "auto", "--threads", "1"]
    result = run_cli(*common, "--max-drop", "100", "--budget-ms", "1000", "--variants", "fp32,int8-ptq,int8-qat")
    assert result.exit_code == 0, result.output
    root = tmp_path / "out" / "shapes"
    doc = json.loads((root / "ladder" / "ladder.json").read_text())
    status = {v["variant"]: v["status"] for v in doc["variants"]}
    assert status["int8-qat"] == "skipped"  # PTQ met every budget: QAT was not trained
    assert "int8 PTQ already meets every budget" in next(v["reason"] for v in doc["variants"] if v["variant"] == "int8-qat")
    assert {status["fp32"], status["int8-ptq"]} == {"chosen", "rejected"}
    assert status["fp16"] == "not requested"
    winner = doc["winner"]
    for v in doc["variants"]:
        if v["variant"] in ("fp32", "int8-ptq"):
            acc = v["accuracy"]
            assert acc["images"] == doc["images"] > 0 and 0.0 <= acc["mcnemar_vs_float"]["p_value"] <= 1.0
            assert v["latency"][0]["threads"] == 1 and v["latency"][0]["p50_ms"] > 0
            assert (root / "ladder" / v["variant"] / "model.tflite").is_file()
            assert (root / "ladder" / v["variant"] / "bench.json").is_file()  # the bench harness's own document
    shipped = root / "auto"
    meta = json.loads((shipped / "edgetl.json").read_text())
    assert meta["target"] == winner["target"] == RUNG_BY_NAME[winner["variant"]].target  # fp32 or int8 PTQ: their own targets
    assert (shipped / "model.tflite").read_bytes() == (root / "ladder" / winner["variant"] / "model.tflite").read_bytes()
    assert (shipped / "labels.txt").is_file() and (shipped / "ladder.json").is_file()
    assert "## Quantization ladder" in (shipped / "report.md").read_text()
    html = (root / "ladder" / "report.html").read_text()
    assert html.startswith("<!doctype html>") and f"<tr class=\"chosen\"><td>{winner['label']}</td>" in html and "<script" not in html

    browser = chromium()  # the report opens in a browser as it is: one table, the chosen row marked
    page = headless(browser, "--window-size=1200,2000", "--dump-dom", (root / "ladder" / "report.html").resolve().as_uri(), tmp_path=tmp_path)
    assert page.returncode == 0 and ("tr", {"class": "chosen"}) in html_elements(page.stdout), page.stderr[-2000:]

    # other budgets on the same model, the conversions made on 2 local worker processes: no --force, nothing retrained
    float_made = (root / "float" / "model.keras").stat().st_mtime_ns
    parallel = run_cli(*common, "--max-drop", "100", "--budget-ms", "1000", "--variants", "fp32,fp16,int8-ptq", "--workers", "2")
    assert parallel.exit_code == 0, parallel.output
    doc2 = json.loads((root / "ladder" / "ladder.json").read_text())
    assert doc2["made_on"] == {"engine": "dask.distributed", "cluster": "local", "workers": 2}
    by_variant = {v["variant"]: v for v in doc2["variants"]}
    assert by_variant["fp16"]["status"] in ("chosen", "rejected") and by_variant["fp16"]["accuracy"]["images"] == doc["images"]
    assert by_variant["fp32"]["accuracy"]["top1"] == next(v for v in doc["variants"] if v["variant"] == "fp32")["accuracy"]["top1"]
    assert (root / "float" / "model.keras").stat().st_mtime_ns == float_made  # the float model was reused, not trained again
    kept = json.loads((shipped / "edgetl.json").read_text())

    # budgets no variant meets (the trained float model is reused): one line naming the closest variant and the budget
    no_fit = run_cli(*common, "--max-drop", "100", "--budget-ms", "0.0001", "--variants", "fp32")
    assert no_fit.exit_code != 0
    lines = [line for line in no_fit.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "the closest, fp32, misses --budget-ms" in lines[0], no_fit.output
    doc = json.loads((root / "ladder" / "ladder.json").read_text())
    assert doc["winner"] is None and doc["closest"]["variant"] == "fp32" and doc["closest"]["misses"] == ["--budget-ms"]
    assert json.loads((shipped / "edgetl.json").read_text()) == kept  # nothing ships; the last good auto/ is left as it was
    assert not (root / "ladder" / "int8-ptq").exists()  # the ladder folder is this run's alone: no stale variant carried over


def test_selective_variant_reports_what_it_keeps_in_float_and_its_latency_cost():
    from edgetl.pipeline.ladder import _selective_cost, ladder_markdown

    ptq = {"variant": "int8-ptq", "latency": [{"threads": 1, "p50_ms": 2.0}, {"threads": 4, "p50_ms": 1.0}]}
    facts = {"keep_float": ["model/conv/Conv2D", "model/dense/MatMul"], "keep_float_layers": ["conv", None], "float_compute_ops": 3}
    cost = _selective_cost(facts, [{"threads": 1, "p50_ms": 2.5}, {"threads": 4, "p50_ms": 1.5}], [ptq])
    assert cost == {"float_layers": ["conv", "model/dense/MatMul"], "float_compute_ops": 3, "p50_vs_int8_ptq": {"1": 1.25, "4": 1.5}}
    doc = {
        "budgets": {"max_drop": 1.0}, "board": {"label": "local"}, "float_top1": 0.9, "images": 10, "threads": [1, 4], "winner": None,
        "variants": [{"variant": "selective-int8-2", "label": "selective int8 (2 float layers)", "status": "rejected", "reason": "x", "selective": cost}],
    }
    assert "kept in float conv, model/dense/MatMul (3 float compute ops); p50 against int8 PTQ: 1.25x @1, 1.50x @4" in ladder_markdown(doc)
