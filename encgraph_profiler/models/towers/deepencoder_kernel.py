"""vLLM 0.33.0's _deepencoder_rel_pos_attention_kernel (deepencoder.py) restated: DeepSeek-OCR's global SAM
attention with the relative-position bias fused, on tensors of any strides, as vLLM passes them (its
einsum leaves the bias terms non-contiguous). Online softmax over key blocks, the bias
rel_h[query, key // width] + rel_w[query, key % width] added to each score; it writes its output and
allocates nothing."""

from __future__ import annotations

import functools


@functools.cache
def fused_kernel():
    """The kernel, compiled on first use (Triton is only needed on CUDA). Every tensor is (batch, head,
    token, feature) with its four strides given after the scalars, in the order q, k, v, rel_h, rel_w, out."""
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, k_ptr, v_ptr, rh_ptr, rw_ptr, o_ptr, scale, tokens, heads, cols: tl.constexpr,
               q_b, q_h, q_m, q_d, k_b, k_h, k_n, k_d, v_b, v_h, v_n, v_d,
               rh_b, rh_h, rh_m, rh_k, rw_b, rw_h, rw_m, rw_k, o_b, o_h, o_m, o_d,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
        batch, head = tl.program_id(1) // heads, tl.program_id(1) % heads
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n, offs_d, mask_m = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_D), offs_m < tokens
        q_ptr += batch * q_b + head * q_h
        k_ptr += batch * k_b + head * k_h
        v_ptr += batch * v_b + head * v_h
        rh_ptr += batch * rh_b + head * rh_h + offs_m[:, None] * rh_m
        rw_ptr += batch * rw_b + head * rw_h + offs_m[:, None] * rw_m
        q = tl.load(q_ptr + offs_m[:, None] * q_m + offs_d[None, :] * q_d, mask=mask_m[:, None], other=0.0)
        row_max, row_sum = tl.full([BLOCK_M], -float("inf"), tl.float32), tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start in range(0, tokens, BLOCK_N):
            keys = start + offs_n
            mask_n = keys < tokens
            both = mask_m[:, None] & mask_n[None, :]
            k = tl.load(k_ptr + keys[None, :] * k_n + offs_d[:, None] * k_d, mask=mask_n[None, :], other=0.0)
            rh = tl.load(rh_ptr + (keys[None, :] // cols) * rh_k, mask=both, other=0.0)
            rw = tl.load(rw_ptr + (keys[None, :] % cols) * rw_k, mask=both, other=0.0)
            scores = (tl.dot(q, k) * scale + rh + rw) * 1.4426950408889634  # log2(e): exp2 below
            scores = tl.where(both, scores, -float("inf"))
            next_max = tl.maximum(row_max, tl.max(scores, axis=1))
            p = tl.math.exp2(scores - next_max[:, None])
            alpha = tl.math.exp2(row_max - next_max)
            row_sum = row_sum * alpha + tl.sum(p, axis=1)
            v = tl.load(v_ptr + keys[:, None] * v_n + offs_d[None, :] * v_d, mask=mask_n[:, None], other=0.0)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            row_max = next_max
        out = o_ptr + batch * o_b + head * o_h + offs_m[:, None] * o_m + offs_d[None, :] * o_d
        tl.store(out, acc / row_sum[:, None], mask=mask_m[:, None])

    return kernel
