"""Helpers the independent builders share: ATen's flash kernel over packed segments, vLLM's per-path ladder."""

import torch

DEVICE = "cuda"  # where the builders make their towers and inputs: a CPU test sets "meta" to trace them


def packed_flash(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling=None,
    cu_seq_lens_q=None,
    cu_seq_lens_k=None,
    max_length_q=None,
    max_length_k=None,
    **_,
):
    """ATen's flash kernel over the packed sequences: (1, heads, tokens, dim) in, (1, tokens, heads, dim) out."""
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    out = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_seq_lens_q, cu_seq_lens_k, max_length_q, max_length_k, 0.0, False, False, scale=scaling
    )[0]
    return out[None], None


def path_ladder(smallest, largest):
    """One path's budgets as vLLM's encoder graph manager captures them: from one item of the path,
    doubling, up to the largest budget, plus the largest; largest first."""
    steps = [smallest * 2**i for i in range(64) if smallest * 2**i <= largest]
    return sorted(set(steps) | {largest}, reverse=True)
