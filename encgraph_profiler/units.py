"""User values: the one place that parses sizes, percentages and integer lists, checks whole numbers
in configs, and formats bytes.

Everything else in encgraph carries bytes as exact ints named ``*_bytes``. Bad values get the same
words wherever they are given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from .errors import UsageError

MiB = 1024**2
GiB = 1024**3

# Binary units are powers of 1024; decimal units are powers of 1000, as the SI and GPU vendors'
# datasheets use them ("80GB" is 80 * 10**9 bytes). Single letters (K, M, G, T) are read as binary,
# the way PyTorch and nvidia-smi print sizes.
_UNITS = {
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")  # ASCII digits, not fullwidth ones


def parse_size(text: str, what: str = "size") -> int:
    """Parse "80GiB", "80GB", "81920MiB", "512M" or "1048576B" into bytes.

    A bare number is refused unless it is 0: "80" could mean 80 bytes or 80 GiB, and reading it
    either way has cost users a plan that was off by a factor of a billion."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match and not unit and float(match.group(1)) == 0:
        return 0
    if not match or unit not in _UNITS:
        number = match.group(1) if match else ""
        hint = f" (a unit is needed: {number} alone could be bytes or GiB)" if match and not unit else ""
        raise UsageError(
            f"cannot read {what} {text!r}{hint}: use a number with a unit such as 80GiB, 80GB, 81920MiB or 4096B"
        )
    return round(float(match.group(1)) * _UNITS[unit])


def parse_percent(text: str, what: str = "tolerance") -> float:
    """Parse "5%" (or the fraction "0.05") into 0.05. A bare number above 1 is refused: "5" could
    mean 5% or 500%."""
    text = str(text).strip()
    try:
        if not text.isascii():  # float() reads other scripts' digits, which no one means here
            raise ValueError
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r}: use a percentage such as 5%") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} {text!r} is not a finite number: use a percentage such as 5%")
    if value < 0:
        raise UsageError(f"{what} {text!r} cannot be negative")
    if not text.endswith("%") and value > 1:
        raise UsageError(f"{what} {text!r} is ambiguous: write {text}% for {text} percent, or a fraction up to 1")
    return value


_WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII: int() also reads fullwidth and Arabic-Indic digits


def parse_int_list(text: str, what: str, example: str = "1024,2048,4096") -> tuple[int, ...]:
    """Parse "1,2,4" into whole numbers, refusing empty items and anything that is not a number in
    ASCII digits."""
    parts = [p.strip() for p in str(text).split(",")]
    if not text or not all(_WHOLE.fullmatch(p) for p in parts):
        raise UsageError(
            f"cannot read {what} {str(text)[:60]!r}: give comma-separated whole numbers in digits 0-9, e.g. {example}"
        )
    return tuple(int(p) for p in parts)


def is_whole_number(value: object, least: int | None = None) -> bool:
    """A JSON config value that is a whole number (not a bool), and at least ``least`` if given."""
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def mib(n_bytes: int | None, signed: bool = False) -> str:
    """Bytes as MiB with one decimal, for tables (what rounds to nothing is 0.0, never -0.0). None
    renders as n/a."""
    if n_bytes is None:
        return "n/a"
    value = round(n_bytes / MiB, 1) or 0.0
    return f"{value:+,.1f}" if signed and value else f"{value:,.1f}"


def gib(n_bytes: int | None) -> str:
    """Bytes as GiB with two decimals, for tables. None renders as n/a."""
    if n_bytes is None:
        return "n/a"
    return f"{n_bytes / GiB:,.2f}"


def counted(n: int, plural: str) -> str:
    """``n`` items in words: "1 image", "16 images" (``plural`` ends in s)."""
    return f"{n:,} {plural[:-1] if n == 1 else plural}"


def captured(budget: int, tokens: int) -> str:
    """A layout caption's opening: the tokens captured, and the budget where whole items make it differ."""
    if tokens == budget:
        return f"{tokens:,} tokens"
    return f"{tokens:,} tokens (budget {budget:,}, in whole items)"


def listed(items: Iterable[str], limit: int = 5) -> str:
    """Items joined with commas, the first ``limit`` of them, then how many more."""
    items = list(items)
    more = f" and {len(items) - limit:,} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
