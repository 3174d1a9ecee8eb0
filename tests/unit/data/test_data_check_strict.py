"""``edgetl data check DIR --strict``: a CI gate that fails (exit 1, one line) on a folder not fit to train on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data.folder import STRICT_MAX_IMBALANCE, STRICT_MIN_IMAGES, check_folder
from tests.helpers import run_cli


def _folder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_fit_folder_passes_strict(tmp_path):
    root = _folder(tmp_path / "ok", {"cat": STRICT_MIN_IMAGES, "dog": STRICT_MIN_IMAGES * 2})
    result = run_cli("data", "check", root, "--strict")
    assert result.exit_code == 0, result.output
    report = json.loads(run_cli("data", "check", root, "--strict", "--json").stdout)
    assert report["strict_failures"] == []


@pytest.mark.parametrize(
    ("counts", "broken", "fragments"),
    [
        ({"cat": 12, "dog": 12}, True, ["1 unreadable or unused file(s)", "broken.png"]),
        ({"cat": 12}, False, ["1 class(es)", "at least 2"]),
        ({"cat": 12, "dog": STRICT_MIN_IMAGES - 1}, False, [f"fewer than {STRICT_MIN_IMAGES} images", f"dog ({STRICT_MIN_IMAGES - 1})"]),
        ({"cat": STRICT_MIN_IMAGES * 11, "dog": STRICT_MIN_IMAGES}, False, ["imbalanced 11.0x", f"over {STRICT_MAX_IMBALANCE:g}x", "cat has 110"]),
    ],
    ids=["unreadable", "one-class", "tiny-class", "imbalance"],
)
def test_strict_fails_with_one_line_naming_the_problem(tmp_path, counts, broken, fragments):
    root = _folder(tmp_path / "data", counts)
    if broken:
        (root / "cat" / "broken.png").write_text("not a png")
    loose = run_cli("data", "check", root)
    assert loose.exit_code == 0, loose.output  # without --strict it reports and passes, as before
    result = run_cli("data", "check", root, "--strict")
    assert result.exit_code == 1, result.output
    # one error line, the last thing on stderr (the scan's own warning about skipped files may precede it)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --strict:"), result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output
    as_json = run_cli("data", "check", root, "--strict", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["strict_failures"] == check_folder(root).strict_failures()


def test_thresholds_can_be_given_to_the_library(tmp_path):
    root = _folder(tmp_path / "data", {"cat": 4, "dog": 4})
    scan = check_folder(root)
    assert scan.strict_failures() and scan.strict_failures(min_images=4) == []
