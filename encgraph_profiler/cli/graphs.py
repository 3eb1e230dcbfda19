"""`encgraph graphs`: vLLM's graph-count breakdown, offline. Imports no torch."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from . import common
from .common import Format, handled, out

EPILOG = """\
Examples:

  encgraph graphs                                   # vLLM defaults: 256 seqs, 8192 tokens

  encgraph graphs --max-num-seqs 128 --budgets 1024,2048,4096

  encgraph graphs --cudagraph-mode FULL_DECODE_ONLY --num-speculative-tokens 2 --format json

The first line printed is the one vLLM logs at start-up ("Profiling CUDA graph memory: ...").
Encoder graphs are counted when --budgets or --max-budget is given: one graph per budget.
"""


@handled
def graphs(
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="Encoder token budgets, e.g. 1024,2048,4096.", rich_help_panel="Encoder")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="Encoder auto ladder up to this budget.", rich_help_panel="Encoder")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="Images per captured encoder batch.", rich_help_panel="Encoder")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
    max_num_seqs: common.MaxNumSeqs = 256,
    max_num_batched_tokens: common.MaxNumBatchedTokens = 8192,
    cudagraph_mode: common.CudagraphMode = "FULL_AND_PIECEWISE",
    cudagraph_capture_sizes: common.CaptureSizes = None,
    max_cudagraph_capture_size: common.MaxCaptureSize = None,
    num_speculative_tokens: common.SpecTokens = 0,
    max_loras: common.MaxLoras = 0,
    specialize_lora: common.SpecializeLora = True,
    blackwell: common.Blackwell = False,
) -> None:
    """Count the CUDA graphs vLLM captures for these settings (no GPU needed)."""
    from ..graphcounts import graph_counts
    from ..ladder import resolve_budgets, resolve_max_items

    decoder = common.decoder_settings(
        max_num_seqs, max_num_batched_tokens, cudagraph_mode, cudagraph_capture_sizes, max_cudagraph_capture_size,
        num_speculative_tokens, max_loras, specialize_lora, blackwell,
    )
    ladder = resolve_budgets(budgets, max_budget) if budgets is not None or max_budget is not None else None
    items = resolve_max_items(ladder, max_items) if ladder else None
    counts = graph_counts(decoder, ladder)
    if output_format is Format.json:
        data = {
            "line": counts.line,
            "total": counts.total,
            "groups": [
                {"kind": g.kind, "count": g.count, "largest": g.largest, "smallest": g.smallest, "sizes": list(g.sizes), "lora_cases": g.cases}
                for g in counts.groups
            ],
            "encoder_max_items": items,
        }
        out.print(json.dumps(data, indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    out.print(counts.line, markup=False)
    table = Table()
    for name in ("mode", "graphs", "largest", "smallest", "sizes"):
        table.add_column(name, justify="left" if name in ("mode", "sizes") else "right")
    for g in counts.groups:
        sizes = ", ".join(map(str, g.sizes))
        if g.cases > 1:
            sizes += f"  (x{g.cases} LoRA cases)"
        if g.kind == "ENCODER":
            sizes = f"budgets {sizes}; {items} images per batch"
        table.add_row(g.kind, str(g.count), str(g.largest), str(g.smallest), sizes)
    if counts.groups:
        out.print(table)
