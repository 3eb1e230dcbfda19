"""``--attn varlen``: one variable-length flash-attention kernel per layer over all the packed
sequences of a batch, as vLLM's ViT attention runs, where sdpa splits the batch on the host and
launches one kernel per image. The kernel is PyTorch's own (``torch.nn.attention.varlen``), so this
needs no package beyond torch.

The towers that pack sequences (the Qwen-style ones) hand ``cu_seqlens`` and the longest sequence
to an attention function only when its name says "flash", and transformers refuses such a name at
build time unless a flash-attn package provides it. So the tower is built with sdpa, and
``use`` then points its config at this function, registered under ``NAME``.
"""

from __future__ import annotations

NAME = "flash_varlen_torch"  # the towers dispatch on "flash" in the name


def attention(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling=None,
    dropout=0.0,
    cu_seq_lens_q=None,
    cu_seq_lens_k=None,
    max_length_q=None,
    max_length_k=None,
    **_,
):
    """transformers' attention-function protocol: query, key and value are (1, heads, tokens, dim),
    the batch packed into one sequence; returns (1, tokens, heads, dim) and no weights."""
    from torch.nn.attention.varlen import varlen_attn

    if cu_seq_lens_q is None or max_length_q is None:
        raise ValueError("varlen attention needs the packed sequences' cu_seqlens and their longest length")
    q, k, v = (t.squeeze(0).transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim) views
    out = varlen_attn(q, k, v, cu_seq_lens_q, cu_seq_lens_k, max_length_q, max_length_k, scale=scaling)
    return out.unsqueeze(0), None


def use(tower) -> None:
    """Make ``tower`` (built with sdpa) run its attention through ``attention``."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, attention)
    tower.config._attn_implementation = NAME


def sequences(config, cu_seqlens, longest: int, device, spare: int = 0) -> dict:
    """The packed sequences as a tower's attention takes them: for this kernel (a "flash" name in
    ``config``) on the device, with the longest sequence given (``longest``, or the longest there
    is when 0) and ``spare`` zero-length sequences after the real ones (vLLM's Kimi-K2.5 capture
    leaves one); for sdpa ``cu_seqlens`` stays on the host, where it splits the batch, the spare left
    out (vLLM's sdpa runs an empty attention on it; transformers' sdpa cannot take one)."""
    from transformers.utils.generic import is_flash_attention_requested

    if is_flash_attention_requested(config):
        longest = longest or int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        if spare:
            import torch

            cu_seqlens = torch.cat([cu_seqlens, cu_seqlens[-1:].repeat(spare)])
        return {"cu_seqlens": cu_seqlens.to(device), "max_seqlen": longest}
    return {"cu_seqlens": cu_seqlens}
