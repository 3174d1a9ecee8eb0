"""``python -m edgetl``: the same CLI as the ``edgetl`` command (for Pythons without the script on PATH)."""

from edgetl.cli import main

main()
