"""``edgetl select``'s grid, budgets and choice, on given figures (pure functions, no TensorFlow).

The real end-to-end run (probe, int8 export, bench, report in Chromium) is in tests/unit/cli/test_select.py.
"""

from __future__ import annotations

import pytest

from edgetl.core.errors import ConfigError
from edgetl.pipeline.select import (
    DEFAULT_GRID,
    Budgets,
    Candidate,
    budget_reasons,
    build_command,
    closest_miss,
    default_candidates,
    pareto_keys,
    parse_candidates,
    recommend,
    weights_for,
)

# -- the grid ------------------------------------------------------------------------------------------


def test_default_grid_is_small_and_registered():
    from edgetl.ml.backbones.spec import BACKBONES

    grid = default_candidates()
    assert grid == parse_candidates(None) == parse_candidates("  ")
    assert 4 <= len(grid) <= 16
    assert {c.backbone for c in grid} == set(DEFAULT_GRID) and all(c.backbone in BACKBONES for c in grid)
    for c in grid:
        spec = BACKBONES.get(c.backbone)
        assert c.input_size >= spec.min_input_size
        assert (c.alpha is None) == (not spec.alphas) and (c.alpha is None or c.alpha in spec.alphas)
    assert len({c.key for c in grid}) == len(grid)


def test_candidates_spec_expands_alphas_by_sizes_in_order():
    got = parse_candidates("mobilenet_v2:0.35,1.0@96,160,224 efficientnet_lite0@224")
    assert [c.label for c in got] == [
        "mobilenet_v2 0.35 @96", "mobilenet_v2 0.35 @160", "mobilenet_v2 0.35 @224",
        "mobilenet_v2 1.0 @96", "mobilenet_v2 1.0 @160", "mobilenet_v2 1.0 @224", "efficientnet_lite0 @224",
    ]
    assert got[-1] == Candidate("efficientnet_lite0", None, 224) and got[-1].key == "efficientnet_lite0-224"
    assert got[0].key == "mobilenet_v2-a0.35-96"


def test_candidates_spec_defaults_and_repeats():
    # no alphas: the default grid's; no sizes: the default grid's; a repeat is dropped
    alphas, sizes = DEFAULT_GRID["mobilenet_v2"]
    got = parse_candidates("mobilenet_v2@32 mobilenet_v2:0.35@32")
    assert [(c.alpha, c.input_size) for c in got] == [(a, 32) for a in alphas]
    got = parse_candidates("mobilenet_v2:0.5")
    assert [c.input_size for c in got] == list(sizes)
    # a backbone outside the default grid: its own default alpha and size
    (only,) = parse_candidates("mobilenet_v3_large")
    assert (only.alpha, only.input_size) == (1.0, 224)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("resnet50@224", ["unknown backbone 'resnet50'", "mobilenet_v2", "efficientnet_lite0"]),
        ("mobilenet_v2:0.3@96", ["alpha '0.3' is not available", "0.35, 0.5, 0.75, 1.0, 1.3, 1.4"]),
        ("efficientnet_lite0:1.0@224", ["efficientnet_lite0 has no width multiplier", "no alpha"]),
        ("mobilenet_v2:0.35@16", ["input size '16' is not supported", "32-1024"]),
        ("mobilenet_v2:0.35@96px", ["input size '96px'"]),
        ("mobilenet_v2:0.35@2240", ["input size '2240'"]),
        ("mobilenet_v2:@96", ["empty value"]),
        ("mobilenet_v2:0.35@96,", ["empty value"]),
        ("mobilenet-v2@96", ["is not BACKBONE[:ALPHA,...][@SIZE,...]"]),
    ],
)
def test_bad_candidates_are_one_line_errors_saying_what_is_allowed(text, fragments):
    with pytest.raises(ConfigError) as info:
        parse_candidates(text)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_weights_auto_uses_imagenet_only_where_it_is_offline(tmp_path, monkeypatch):
    import edgetl.ml.backbones.spec as spec_module

    monkeypatch.setattr(spec_module, "KERAS_CACHE", tmp_path)
    candidate = Candidate("mobilenet_v2", 0.35, 96)
    used, note = weights_for(candidate, "auto")
    assert used == "none" and "no ImageNet weights offline" in note
    spec = spec_module.BACKBONES.get("mobilenet_v2")
    (tmp_path / spec.weights_file(0.35, 96)).write_bytes(b"stand-in")
    assert weights_for(candidate, "auto")[0] == "imagenet"
    assert weights_for(candidate, "none") == ("none", "random weights (--weights none)")
    assert weights_for(candidate, "/w.h5")[0] == "/w.h5"


# -- budgets and the choice -----------------------------------------------------------------------------


def _entry(key, top1, p50, size, *, arena=None, tflm_error=None, board="local", emulated=False, extra_boards=None):
    latency = {board: {"p50_ms": p50, "p90_ms": p50 * 1.1, "emulated": emulated}}
    latency.update(extra_boards or {})
    entry = {
        "key": key, "label": key, "backbone": "mobilenet_v2", "alpha": 0.35, "input_size": 96,
        "probe": {"top1": top1}, "size_bytes": size, "latency": latency, "weights": {"used": "imagenet"},
    }
    if arena is not None or tflm_error is not None:
        entry["tflm"] = {"arena_bytes": arena, **({"error": tflm_error} if tflm_error else {})}
    return entry


def test_budget_reasons_name_each_budget_missed():
    budgets = Budgets(latency_ms=5.0, ram_bytes=256 * 1024, flash_bytes=1024 * 1024)
    assert budget_reasons(_entry("a", 0.9, 4.9, 900_000, arena=200_000), budgets) == []
    reasons = budget_reasons(_entry("b", 0.9, 7.4, 2 * 1024 * 1024, arena=300 * 1024), budgets)
    assert reasons == ["p50 7.40 ms > 5 ms on local", "arena 300 KiB > RAM 256 KiB", "2 MiB > flash 1 MiB"]
    assert budget_reasons(_entry("c", 0.9, 1.0, 1000, tflm_error="uses operator(s) TFLite Micro has no kernel for: HARD_SWISH"), budgets) == [
        "does not run in TFLite Micro: uses operator(s) TFLite Micro has no kernel for: HARD_SWISH"
    ]
    # no budgets: nothing is over; an emulated board's time is not held to the latency budget
    assert budget_reasons(_entry("d", 0.9, 700.0, 10**9, arena=10**9), Budgets()) == []
    assert budget_reasons(_entry("e", 0.9, 700.0, 10, emulated=True, board="arm64-emulated"), budgets) == []
    # several boards: each one over budget is named
    two = _entry("f", 0.9, 4.0, 10, extra_boards={"ssh://pi@board": {"p50_ms": 9.0, "p90_ms": 9.5, "emulated": False}})
    assert budget_reasons(two, Budgets(latency_ms=5.0)) == ["p50 9.00 ms > 5 ms on ssh://pi@board"]


def test_budgets_refuse_nonsense():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--budget-ms"):
            Budgets(latency_ms=bad)


def _marked(entries, budgets):
    for e in entries:
        e["over_budget"] = budget_reasons(e, budgets)
    return entries


def test_recommend_takes_the_best_probe_within_budget():
    entries = _marked([
        _entry("best-but-slow", 0.95, 9.0, 100), _entry("good", 0.90, 3.0, 300), _entry("worse", 0.80, 1.0, 100),
    ], Budgets(latency_ms=5.0))
    assert recommend(entries)["key"] == "good"
    assert recommend(_marked(entries, Budgets()))["key"] == "best-but-slow"


def test_recommend_breaks_ties_by_latency_then_size():
    entries = _marked([_entry("slow", 0.9, 3.0, 100), _entry("fast-big", 0.9, 2.0, 900), _entry("fast-small", 0.9, 2.0, 500)], Budgets())
    assert recommend(entries)["key"] == "fast-small"
    entries = _marked([_entry("slow", 0.9, 3.0, 100), _entry("fast", 0.9, 2.0, 900)], Budgets())
    assert recommend(entries)["key"] == "fast"


def test_a_probe_gap_within_the_tie_goes_to_the_faster_candidate():
    """One held-out image in 180 (0.56 pts) is noise: the faster candidate wins; two images are not a tie."""
    entries = _marked([_entry("96px", 1.0, 2.5, 500), _entry("64px", 179 / 180, 1.2, 400), _entry("48px", 178 / 180, 0.6, 300)], Budgets())
    assert recommend(entries)["key"] == "96px"
    assert recommend(entries, tie=1 / 180)["key"] == "64px"


def test_no_fit_names_the_closest_candidate():
    budgets = Budgets(latency_ms=5.0, flash_bytes=1000)
    entries = _marked([_entry("far", 0.99, 50.0, 500), _entry("near", 0.5, 6.0, 500), _entry("big", 0.9, 1.0, 1300)], budgets)
    assert recommend(entries) is None
    closest = closest_miss(entries, budgets)
    assert closest["key"] == "near" and closest["over_budget"] == ["p50 6.00 ms > 5 ms on local"]
    # a model TFLite Micro cannot run is never the closest while another one can be made to fit
    ram = Budgets(ram_bytes=1000)
    entries = _marked([_entry("cannot", 0.99, 1.0, 10, tflm_error="no kernel"), _entry("too-big", 0.1, 1.0, 10, arena=5000)], ram)
    assert closest_miss(entries, ram)["key"] == "too-big"
    assert closest_miss(_marked([_entry("ok", 0.9, 1.0, 10)], budgets), budgets) is None


def test_pareto_front_keeps_only_undominated_candidates():
    entries = [
        _entry("fast-low", 0.6, 1.0, 1), _entry("mid", 0.8, 2.0, 1), _entry("dominated", 0.7, 3.0, 1),
        _entry("slow-high", 0.9, 5.0, 1), _entry("twin-of-mid", 0.8, 2.0, 1),
    ]
    assert pareto_keys(entries) == {"fast-low", "mid", "twin-of-mid", "slow-high"}


def test_build_command_is_ready_to_run():
    entry = _entry("a", 0.9, 1.0, 1)
    assert build_command(entry, "/data/my photos") == (
        "edgetl build --data '/data/my photos' --model mobilenet_v2 --alpha 0.35 --input-size 96 --target tflite-int8"
    )
    entry.update(backbone="efficientnet_lite0", alpha=None, input_size=224, weights={"used": "none"})
    assert build_command(entry, "d") == "edgetl build --data d --model efficientnet_lite0 --input-size 224 --weights none --target tflite-int8"
