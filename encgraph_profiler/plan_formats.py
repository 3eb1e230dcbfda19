"""Machine forms of a capacity plan: the JSON `plan --format json` writes, and the KV-capacity block
of an AISimulate config."""

from __future__ import annotations

from typing import Any

from .plan import CapacityPlan
from .schema import Report


def as_dict(plan: CapacityPlan) -> dict[str, Any]:
    """The plan as `plan --format json` writes it."""
    return {
        "model": plan.model,
        "gpu": plan.gpu,
        "fits": plan.fits,
        "verdict": plan.verdict,
        "terms": [{"name": t.name, "bytes": t.bytes, "source": t.source} for t in plan.terms],
        "kv_cache_bytes": plan.kv_cache_bytes,
        "kv_bytes_per_token": plan.kv_bytes_per_token,
        "kv_tokens": plan.kv_tokens,
        "max_model_len": plan.max_model_len,
        "concurrency": plan.concurrency,
        "kv_tokens_per_graph_gib": plan.tokens_per_graph_gib,
        "shortfall_bytes": plan.shortfall_bytes,
        "fitting_ladder": plan.fitting_ladder,
        "vllm_flags": plan.vllm_flags,
        "notes": list(plan.notes),
        "kv_is_upper_bound": plan.kv_is_upper_bound,
    }


def aisimulate(plan: CapacityPlan, report: Report, utilization: float) -> str:
    """The KV-cache capacity block of an ai-dynamo AISimulate prediction config: its
    cuda_graph_reserved_bytes is the CUDA-graph memory of one rank, here every graph term of the
    plan (the encoder graphs measured, and decoder graphs where an option or a vLLM log gave them)."""
    graphs = [t for t in plan.terms if "graphs" in t.name]
    reserved = sum(t.bytes for t in graphs)
    budgets = sorted(b.budget for b in report.budgets)
    # a prediction's GPU name says what it was predicted for
    origin = report.provenance.gpu_name if report.predicted else f"measured on {report.provenance.gpu_name}"
    lines = [
        f"# encgraph plan for {plan.model} on {plan.gpu}: {len(budgets)} encoder CUDA graphs, largest budget "
        f"{budgets[-1] if budgets else 0} tokens ({', '.join(map(str, budgets))}), {origin}",
        "# CUDA-graph memory of one rank: " + "; ".join(f"{t.name} {t.bytes:,} B ({t.source})" for t in graphs),
        "# Place under engine.workers.<role> of an AISimulate prediction config.",
        "kv_cache:",
        "  capacity:",
        "    type: default",
        f"    memory_fraction: {utilization:g}",
        f"    cuda_graph_reserved_bytes: {reserved}",
    ]
    return "\n".join(lines) + "\n"
