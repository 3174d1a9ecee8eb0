"""The templates of the files packages hold, and the one way to fill them.

Each generated text file (C/C++ headers, the Kotlin/Swift/C++ READMEs, ``predict.py``) is a file under
``edgetl/package/templates/`` (package data, shipped in the wheel), written as the output looks, with
``@@name@@`` where a value goes: a marker no generated language uses, so Kotlin's ``$x``, Swift's ``$0``
and every ``{}`` stay as they are. :func:`render` fills them in one pass (a value that happens to hold
``@@x@@`` is not filled again) and insists that the markers and the values given match exactly.

Values are inserted verbatim: callers pass numbers, fixed snippets edgetl chose, and text from outside
edgetl (class names, file names, the contract) only after the escaping writer of
:mod:`edgetl.core.text` for the language it lands in.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from edgetl.core.text import markdown_text

_MARKER = re.compile(r"@@([a-z_][a-z0-9_]*)@@")


@functools.cache
def template(name: str) -> str:
    """The text of ``templates/<name>``."""
    return resources.files("edgetl.package").joinpath("templates", name).read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """``templates/<name>`` with each ``@@key@@`` replaced by ``str(values[key])``.

    Raises:
        KeyError: a marker without a value, or a value without a marker (a bug in edgetl, not in the input).
    """
    text = template(name)
    wanted = set(_MARKER.findall(text))
    if wanted != set(values):
        raise KeyError(f"template {name}: no value for {sorted(wanted - set(values))}, no marker for {sorted(set(values) - wanted)}")
    return _MARKER.sub(lambda match: str(values[match.group(1)]), text)


def markdown_names(names: list[str]) -> str:
    """Class names for running Markdown text, each escaped."""
    return ", ".join(markdown_text(name) for name in names)
