"""`encgraph graphs`: vLLM's graph-count breakdown, offline. Imports no torch."""

from __future__ import annotations

from ..errors import UsageError
from . import options as o
from .options import DECODER
from .output import emit_json, handled, show

EXIT_CODES = o.returns({})

EPILOG = o.epilog(
    """\
Examples:

  encgraph graphs                                   # vLLM defaults: 256 seqs, 8192 tokens

  encgraph graphs --max-num-seqs 128 --budgets 1024,2048,4096

  encgraph graphs --cudagraph-mode FULL_DECODE_ONLY --num-speculative-tokens 2 --format json

The first line printed is the one vLLM logs at start-up ("Profiling CUDA graph memory: ...").
Encoder graphs are counted when --budgets or --max-budget is given: one graph per budget.
""",
    EXIT_CODES,
)


@handled
def graphs(
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    output_format: o.OutputFormat = o.Format.table,
    max_num_seqs: o.MaxNumSeqs = DECODER.max_num_seqs,
    max_num_batched_tokens: o.MaxNumBatchedTokens = DECODER.max_num_batched_tokens,
    cudagraph_mode: o.CudagraphMode = DECODER.cudagraph_mode,
    cudagraph_capture_sizes: o.CaptureSizes = None,
    max_cudagraph_capture_size: o.MaxCaptureSize = None,
    num_speculative_tokens: o.SpecTokens = DECODER.num_speculative_tokens,
    max_loras: o.MaxLoras = DECODER.max_loras,
    specialize_lora: o.SpecializeLora = DECODER.specialize_lora,
    blackwell: o.Blackwell = DECODER.blackwell,
) -> None:
    """Count the CUDA graphs vLLM captures for these settings (no GPU needed)."""
    from .. import render
    from ..graphcounts import graph_counts
    from ..ladder import QWEN_SMALLEST_BUDGET, AutoLadder, resolve_budgets, resolve_max_items

    decoder = o.decoder_settings(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, cudagraph_mode=cudagraph_mode,
        cudagraph_capture_sizes=cudagraph_capture_sizes, max_cudagraph_capture_size=max_cudagraph_capture_size,
        num_speculative_tokens=num_speculative_tokens, max_loras=max_loras, specialize_lora=specialize_lora,
        blackwell=blackwell,
    )  # fmt: skip
    ladder = resolve_budgets(budgets, max_budget) if budgets is not None or max_budget is not None else None
    if ladder is None and max_items is not None:
        raise UsageError("--max-items counts the encoder's images per batch: give it with --budgets or --max-budget")
    if isinstance(ladder, AutoLadder):  # no model here: the Qwen-style families' ladder
        ladder = ladder.budgets(QWEN_SMALLEST_BUDGET)
    items = resolve_max_items(ladder, max_items) if ladder else None
    counts = graph_counts(decoder, ladder)
    if output_format is o.Format.json:
        groups = [
            {
                "kind": g.kind,
                "count": g.count,
                "largest": g.largest,
                "smallest": g.smallest,
                "sizes": list(g.sizes),
                "lora_cases": g.cases,
            }
            for g in counts.groups
        ]
        emit_json({"line": counts.line, "total": counts.total, "groups": groups, "encoder_max_items": items})
        return
    show(counts.line)
    if counts.groups:
        show(render.graphs_table(counts, items))
