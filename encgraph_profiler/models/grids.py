"""The grid-dependent inputs a family precomputes outside the graph (positions, rotary angles, gather
indices), laid out image after image over a batch of many equal images: built once for each distinct
grid and repeated, and, for ``predict``, on the meta device, where a repetition is a shape alone. So
neither the work nor the host memory of a prediction grows with the budget's images (a per-patch
table of 16,777,216 tokens' patches, built on the host, took MiniMax M3 past 24 GB).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any


def staging(device):
    """Where a precomputed input is built before it goes to ``device``: the host, as the GPU run builds
    it, or, on the meta device (``predict``), the meta device itself, where it is its shape alone."""
    import torch

    return torch.device(device) if torch.device(device).type == "meta" else torch.device("cpu")


def per_grid(grids, build: Callable[[Any], Any], where, step: Callable[[Any], int] | None = None):
    """``build(grid)`` for each of ``grids`` in turn, concatenated along the first dimension on ``where``,
    as a tower's grid-dependent inputs (positions, angles, gather indices) are laid out. ``build`` runs
    once a run of equal grids and its result is repeated, so a budget of many equal images costs one
    image's work, and on the meta device (``staging``) no memory that grows with the budget. With
    ``step``, each copy's values are shifted by ``step(grid)`` for every image before it (an index into
    the packed batch)."""
    import torch

    parts, start = [], 0
    for grid, run in itertools.groupby(grids):
        count, one = sum(1 for _ in run), build(grid).to(where)
        if step is None:
            parts.append(one.repeat(count, *(1,) * (one.dim() - 1)))
            continue
        shifts = start + step(grid) * torch.arange(count, dtype=one.dtype, device=where)
        parts.append((one[None] + shifts.view(-1, *(1,) * one.dim())).flatten(0, 1))
        start += step(grid) * count
    return parts[0] if len(parts) == 1 else torch.cat(parts)
