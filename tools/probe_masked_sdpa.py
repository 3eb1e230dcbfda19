"""On a CUDA machine: what sdpa with an attention mask asks of the caching allocator, for the
shapes Gemma 4's vision towers give it (a boolean padding mask over every image's patches, queries
a transposed view, as transformers' sdpa attention passes them). The trace
(encgraph_profiler/trace.py) must allocate what the kernels allocate; this prints, per shape, every
allocation and free the call made, in order, with its size and which earlier allocation it frees,
as the allocator's history records them, as JSON lines.

    python3 tools/probe_masked_sdpa.py > masked_sdpa.jsonl
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

# (batch, heads, tokens, head size): Gemma 4 31B's tower (16 heads of 72) at 1 and 29 images of 2,520
# patches, the 768-wide tower (12 heads of 64), and token counts on and off a multiple of 16.
SHAPES = (
    (1, 16, 2520, 72),
    (29, 16, 2520, 72),
    (3, 12, 2520, 64),
    (2, 16, 2512, 72),
    (2, 16, 2521, 72),
    (2, 4, 48, 16),
)


def events_of(call) -> list[dict]:
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(context=None, max_entries=10000)
    out = call()
    torch.cuda.synchronize()
    trace = torch.cuda.memory._snapshot()["device_traces"][0]
    torch.cuda.memory._record_memory_history(enabled=None)
    live, events = {}, []  # address -> the number of the allocation living there
    for e in trace:
        if e["action"] == "alloc":
            live[e["addr"]] = sum("alloc" in seen for seen in events)
            events.append({"alloc": e["size"], "id": live[e["addr"]]})
        elif e["action"] == "free_requested" and e["addr"] in live:
            events.append({"free": live.pop(e["addr"]), "size": e["size"]})
    del out
    return events


def probe(batch: int, heads: int, tokens: int, size: int) -> None:
    q, k, v = (
        torch.randn(batch, tokens, heads, size, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3)
    )
    valid = torch.ones(batch, tokens, dtype=torch.bool, device="cuda")
    valid[:, tokens * 9 // 10 :] = False
    mask = valid[:, None, :, None] & valid[:, None, None, :]
    for kind, m in (("bool", mask), ("none", None)):

        def call(m=m):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=0.0, scale=1.0, is_causal=False)

        with torch.inference_mode():
            call()  # the first call settles the kernel choice
            events = events_of(call)
        print(
            json.dumps(
                {"batch": batch, "heads": heads, "tokens": tokens, "head_size": size, "mask": kind, "events": events}
            )
        )
        sys.stdout.flush()


def main() -> None:
    print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}))
    for shape in SHAPES:
        probe(*shape)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
