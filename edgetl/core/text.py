"""Text that comes from outside edgetl (class names, file names, model metadata): checked when read,
escaped when shown, and written into generated code only as escaped literals.

* :func:`class_name_problem`: what is wrong with a class name (None when nothing is). The one rule used
  for class folders (:mod:`edgetl.data.images`) and for labels read from metadata (:mod:`edgetl.core.metadata`).
* :func:`display_safe`: a string as it may be printed to a terminal (control, format and bidi
  characters as ``\\x..``/``\\u....`` escapes; rich markup escaped).
* :func:`shown`: a value for a one-line error message (``repr``, truncated).
* One literal writer per generated language: :func:`c_string` (C/C++), :func:`kotlin_string`,
  :func:`swift_string`, :func:`python_string`; :func:`markdown_code` and :func:`markdown_text` for READMEs.

Needs the standard library only (rich, for markup escaping, is imported when asked).
"""

from __future__ import annotations

import unicodedata

#: Longest class name accepted (a file name component is at most 255 bytes on common file systems).
MAX_CLASS_NAME_CHARS = 255
#: Line and paragraph separators: not control characters, but line breaks to many readers
#: (Python's ``str.splitlines``, JavaScript, some editors).
LINE_SEPARATORS = frozenset("\u2028\u2029")
#: Unicode categories escaped for display: control, format (bidi marks, zero-width), surrogate, line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
CLASS_NAME_RULE = (
    f"a non-blank string of at most {MAX_CLASS_NAME_CHARS} characters, valid UTF-8, "
    "with no control characters (newline, tab, escape, ...) and no line/paragraph separators (U+2028, U+2029)"
)


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def class_name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a class name, or None when it is fine.

    Refused: non-strings, empty or blank names, names longer than :data:`MAX_CLASS_NAME_CHARS`,
    names that are not valid UTF-8 (lone surrogates, as undecodable bytes of a file name become
    on Linux), control characters (Unicode category Cc: newline, carriage return, tab, escape,
    NUL, C1 controls) and U+2028/U+2029. Any of those would split or corrupt ``labels.txt`` (one
    line per class) or a terminal. Bidi and other format characters (U+202E, U+200F) are legal in
    names: they are escaped wherever a name is displayed or written into code.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name.strip():
        return "is empty or blank"
    if len(name) > MAX_CLASS_NAME_CHARS:
        return f"is {len(name)} characters long"
    for char in name:
        category = unicodedata.category(char)
        if category == "Cs":
            return f"is not valid UTF-8 (it holds the undecodable code point {_codepoint(char)})"
        if category == "Cc" or char in LINE_SEPARATORS:
            return f"contains the control character {_codepoint(char)}"
    return None


def display_safe(text: object, *, markup: bool = True) -> str:
    """``text`` as it may be printed: every control, format (bidi, zero-width), surrogate and line/paragraph
    separator character as a visible ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` escape, so an ANSI escape
    sequence or a right-to-left override in a class or file name cannot restyle or reorder the terminal.

    Args:
        text: anything; ``str()`` of it is used.
        markup: also escape rich markup (``[bold]``), for strings rich parses (``console.print``, table
            cells); False for ``rich.text.Text`` and plain logging.
    """
    out = []
    for char in str(text):
        if unicodedata.category(char) in _ESCAPED_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    safe = "".join(out)
    if markup:
        from rich.markup import escape

        safe = escape(safe)
    return safe


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a one-line message, cut to about ``limit`` characters (``repr`` escapes
    newlines, control and bidi characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------- code literals


def c_string(text: str) -> str:
    """A C/C++ string literal for ``text``: its UTF-8 bytes, printable ASCII as is except ``"``, ``\\``
    and ``?`` (trigraphs), everything else as three-digit octal escapes (an octal escape stops after
    three digits, so a following digit cannot run on, unlike ``\\x``). Safe inside ``//`` comments too:
    no newline, and no backslash at a line end (line splicing).

    Raises:
        UnicodeEncodeError: ``text`` holds lone surrogates (not text; refused when read).
    """
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if 32 <= byte < 127 and char not in '"\\?':
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _quoted(text: str, escaped: str, non_ascii) -> str:
    """``"..."`` with each character of ``escaped`` backslash-escaped, printable ASCII as is, and
    everything else spelled by ``non_ascii(char)``."""
    out = []
    for char in text:
        if char in escaped:
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(non_ascii(char))
    return '"' + "".join(out) + '"'


def kotlin_string(text: str) -> str:
    """A Kotlin (or Java) string literal for ``text``: ``\\``, ``"`` and ``$`` (string templates) escaped,
    and anything but printable ASCII as ``\\uXXXX`` UTF-16 units."""
    return _quoted(text, '\\"$', lambda char: "".join(f"\\u{unit:04X}" for unit in _utf16_units(char)))


def swift_string(text: str) -> str:
    """A Swift string literal for ``text``: ``\\`` (so ``\\(`` interpolation cannot start) and ``"``
    escaped, anything but printable ASCII as ``\\u{X}`` Unicode scalars."""
    return _quoted(text, '\\"', lambda char: f"\\u{{{ord(char):X}}}")


def python_string(text: str) -> str:
    """A Python string literal for ``text`` (``repr`` of a real ``str``: quotes, backslashes, newlines,
    control and bidi characters are escaped)."""
    return repr(str(text))


def markdown_text(text: object) -> str:
    """``text`` for running Markdown prose: escapes as :func:`display_safe` (no newline or bidi override
    survives) and backslash-escapes Markdown punctuation, so a name cannot open a code block, link or
    HTML tag."""
    safe = display_safe(text, markup=False)
    return "".join("\\" + char if char in "\\`*_[]<>#|~" else char for char in safe)


def markdown_code(text: object) -> str:
    """``text`` as a Markdown code span: escapes as :func:`display_safe`, delimited by more backticks
    than it holds in a row."""
    safe = display_safe(text, markup=False)
    longest = run = 0
    for char in safe:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if safe.startswith("`") or safe.endswith("`") or not safe.strip() else ""
    return f"{fence}{pad}{safe}{pad}{fence}"
