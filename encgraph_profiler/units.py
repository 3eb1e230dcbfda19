"""Byte sizes: the one place that parses human sizes and formats bytes for display.

Everything else in encgraph carries bytes as exact ints named ``*_bytes``.
"""

from __future__ import annotations

import re

from .errors import UsageError

# Binary units are powers of 1024; decimal units are powers of 1000, as the SI and GPU vendors'
# datasheets use them ("80GB" is 80 * 10**9 bytes). Single letters (K, M, G, T) are read as binary,
# the way PyTorch and nvidia-smi print sizes.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse "80GiB", "80GB", "81920MiB", "512M" or a plain byte count into bytes."""
    match = _SIZE.match(str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(
            f"cannot read {text!r} as a size: use a number with a unit such as 80GiB, 80GB, 81920MiB"
        )
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return int(round(value))


def mib(n_bytes: int | None, signed: bool = False) -> str:
    """Bytes as MiB with one decimal, for tables. None renders as n/a."""
    if n_bytes is None:
        return "n/a"
    value = n_bytes / 1024**2
    return f"{value:+,.1f}" if signed else f"{value:,.1f}"


def gib(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "n/a"
    return f"{n_bytes / 1024**3:,.2f}"
