"""Sizes and margins as users write them (``256KB``, ``1MB``, ``10%``) and as people read them (``85.9 KiB``)."""

from __future__ import annotations

import re

from edgetl.core.errors import ConfigError

#: Default arena margin: the larger of these two.
DEFAULT_MARGIN_BYTES = 16 * 1024


DEFAULT_MARGIN_FRACTION = 0.10


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30}


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes from ``"256KB"``, ``"1MB"``, ``"1.5MiB"`` or ``"300000"``; KB and KiB both mean 1024 bytes.

    Raises:
        ConfigError: not a size.
    """
    allowed = "pass a positive number of bytes (300000) or a size in KB/MB (256KB, 1MB; 1 KB = 1024 bytes)"
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ConfigError(f"Received {what} {text}; {allowed}")
        return text
    match = _SIZE.match(str(text))
    value = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]) if match else 0
    if value <= 0:
        raise ConfigError(f"Received {what} {text!r}; {allowed}")
    return value


def parse_margin(text: str | None) -> tuple[int, float]:
    """An arena margin as ``(bytes, fraction)``; the margin used is the larger of the two.

    ``None``: 16 KiB or 10%, whichever is larger. ``"10%"``: 10% only. ``"16KB"``/``"4096"``: bytes only.

    Raises:
        ConfigError: neither a size nor a percentage.
    """
    if text is None:
        return DEFAULT_MARGIN_BYTES, DEFAULT_MARGIN_FRACTION
    value = str(text).strip()
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 1000:
            raise ConfigError(f"Received arena_margin={text!r}; pass a percentage (10%) or a size (16KB, 4096)")
        return 0, percent / 100
    if value in ("0", "0%"):
        return 0, 0.0
    return parse_size(value, "--arena-margin"), 0.0


def human_size(n: int) -> str:
    """``87936`` -> ``"85.9 KiB"`` (KiB = 1024 bytes)."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.{2 if unit == 'MiB' else 1}f} {unit}"
    return f"{n} bytes"
