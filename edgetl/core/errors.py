"""The one exception family edgetl raises on bad input.

The CLI catches :class:`EdgetlError` only, prints its message on one line and exits
non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgetlError(Exception):
    """Root of every error that is the user's to fix (bad input, missing file, bad option)."""

    exit_code = 2


class ConfigError(EdgetlError):
    """A configuration value, flag or TOML key is malformed or unknown."""


class DataError(EdgetlError):
    """The image folder cannot be used as it is."""


class ExportError(EdgetlError):
    """A model could not be converted to the requested format."""


class VerificationError(EdgetlError):
    """An exported artifact disagrees with the model it came from."""


class MissingDependencyError(EdgetlError):
    """An optional package needed for this path is not installed."""


class OutputExistsError(EdgetlError):
    """The output folder already holds a different build."""


class ArtifactError(EdgetlError):
    """A model file is missing, unreadable or not a valid model."""


class RemoteError(EdgetlError):
    """A board cannot be reached over SSH, refuses the login or its host key, or fails a command."""


class BudgetError(EdgetlError):
    """A model does not fit a stated budget: memory (RAM for the tensor arena, flash for the model), or, for
    ``build --target auto``, no variant of the quantization ladder meets the accuracy, latency and memory budgets."""
