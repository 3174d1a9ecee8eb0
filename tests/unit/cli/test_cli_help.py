"""Every command's help shows its text whole: Rich markup must not eat a ``[section]`` written in a help."""

from __future__ import annotations

import re

from typer.main import get_command
from typer.testing import CliRunner

from edgetl.cli import app

#: A bracketed word in help text, as users write TOML sections: ``[package]``, ``[train]``.
_BRACKETED = re.compile(r"\[[A-Za-z_][\w.-]*\]")


def _commands(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def _texts(command) -> list[str]:
    return [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]


def test_help_texts_keep_their_brackets():
    runner = CliRunner()
    checked = 0
    for path, command in _commands(get_command(app)):
        wanted = [m for text in _texts(command) for m in _BRACKETED.findall(text.replace("\\[", "["))]
        if not wanted:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "3000", "TERMINAL_WIDTH": "3000"})
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        for word in wanted:
            assert word in shown, f"`edgetl {' '.join(path)} --help` lost {word!r} (Rich read it as markup: write \\\\{word})"
            checked += 1
    assert checked >= 2  # the check ran on real help texts (build's --package, train's --deterministic)


def test_flags_show_no_value_type():
    """A boolean flag (or a ``-v`` counter) takes no value: its help row must not say ``<bool>``/``<int>``
    (typer 0.2x prints the annotation's type for flags too)."""
    runner = CliRunner()
    seen = 0
    for path, command in _commands(get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "3000", "TERMINAL_WIDTH": "3000"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, f"`edgetl {' '.join(path)} --help` shows <bool> for a flag"
        if any(getattr(p, "count", False) for p in command.params):
            row = next(line for line in result.output.splitlines() if "--verbose" in line)
            assert "<int>" not in row, row
        seen += 1
    assert seen >= 10  # every command and group was looked at
    # options that take a value keep their type
    result = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "3000", "TERMINAL_WIDTH": "3000"})
    assert "<int>" in next(line for line in result.output.splitlines() if "--warmup" in line)
