"""The names cli/models.py imports, until it imports them from ``output`` and ``options`` itself."""

from __future__ import annotations

from .options import Format
from .output import handled, out

__all__ = ["Format", "handled", "out"]
