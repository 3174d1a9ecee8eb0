"""``python -m edgetl.bench.worker SPEC.json``: one benchmark measurement in a fresh process.

Started by :func:`edgetl.bench.isolation.measure_in_subprocess`, once per (artifact, thread count), so
cold start and peak RSS belong to that measurement alone. The spec file names where to write
the outcome (``{"ok": true, "result": ...}`` or ``{"ok": false, "error": class name, "message": ...}``);
stdout carries only progress lines for the parent's progress bar. No TensorFlow is imported.
The measurement is :func:`edgetl.bench.board_runner.measure` (via :func:`edgetl.bench.isolation.measure`), the
same code ``edgetl bench --remote`` runs on a board.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgetl.bench.isolation import _PROGRESS_PREFIX, measure
from edgetl.core import fs as _fs
from edgetl.core.errors import EdgetlError


def _report(done: int, total: int, message: str) -> None:
    # stdout is this process's channel to the parent, not user output.
    sys.stdout.write(f"{_PROGRESS_PREFIX}{int(done)} {int(total)} {' '.join(message.split())}\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m edgetl.bench.worker SPEC.json\n")
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result_path = Path(spec["result_path"])
    try:
        outcome = {"ok": True, "result": measure(spec, _report)}
    except EdgetlError as exc:
        outcome = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    _fs.write_json(result_path, outcome)
    return 0 if outcome["ok"] else 3


if __name__ == "__main__":
    sys.exit(main())
