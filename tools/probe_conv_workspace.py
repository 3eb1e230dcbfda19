"""On a CUDA machine: how much workspace cuDNN's patch-embedding convolution takes from the caching
allocator, for the image sizes, patch sizes and widths the bundled towers use, batch by batch, and
for one-patch images as the towers that embed packed patches with a convolution feed it.
The trace (encgraph_profiler/trace.py) must allocate what the kernel allocates; this prints, per
shape, the requests the convolution made of the allocator (its output, then any workspace), as the
allocator's history records them, and the workspace the NHWC-transform rule predicts, as JSON lines.

    python3 tools/probe_conv_workspace.py > conv_workspace.jsonl
"""

from __future__ import annotations

import json
import sys

import torch

# (image size, patch size, output channels): SigLIP-so400m 384, CLIP-L 336 and 224, Gemma 3's
# SigLIP 896, SmolVLM2 512/16, InternVL 448, Idefics3-8B 364, ViT-B 224/16.
SHAPES = (
    (384, 14, 1152),
    (336, 14, 1024),
    (224, 14, 1024),
    (896, 14, 1152),
    (512, 16, 768),
    (448, 14, 1024),
    (364, 14, 1152),
    (224, 16, 768),
)
BATCHES = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 16, 20, 24, 28, 32, 48, 64, 96, 128)
# One patch an image, as Kimi's MoonViT embeds its packed patches (1 x 1 outputs), patches by the thousand.
PATCH_SHAPES = ((14, 14, 1152),)
PATCH_BATCHES = (
    1,
    64,
    128,
    192,
    256,
    320,
    384,
    448,
    512,
    640,
    768,
    896,
    1024,
    4096,
    16384,
    32768,
    65536,
    100000,
    131072,
    262144,
)


def nhwc_rule(batch: int, size: int, patch: int, channels: int, element: int = 2) -> int:
    """Input and output in NHWC with the 3 input channels padded to 8, and the weight likewise; a
    1 x 1 output is the same in NHWC as in NCHW, so it needs no copy."""
    out = size // patch
    output = 0 if out == 1 else batch * out * out * channels
    return element * (batch * size * size * 8 + output + channels * patch * patch * 8) + 16


def main() -> None:
    torch.backends.cudnn.benchmark = False
    print(
        json.dumps(
            {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "gpu": torch.cuda.get_device_name()}
        )
    )
    shapes = [(shape, BATCHES) for shape in SHAPES] + [(shape, PATCH_BATCHES) for shape in PATCH_SHAPES]
    for (size, patch, channels), batches in shapes:
        conv = torch.nn.Conv2d(3, channels, patch, stride=patch, device="cuda", dtype=torch.bfloat16)
        for batch in batches:
            if batch * size * size * 3 * 2 > 4 << 30:
                continue
            x = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.bfloat16)
            with torch.inference_mode():
                conv(x)  # heuristics settle on the first call
                torch.cuda.synchronize()
                torch.cuda.memory._record_memory_history(context="alloc", stacks="python", max_entries=1000)
                y = conv(x)
                torch.cuda.synchronize()
                events = torch.cuda.memory._snapshot()["device_traces"][0]
                torch.cuda.memory._record_memory_history(enabled=None)
            requests = [e["size"] for e in events if e["action"] == "alloc"]
            output = y.untyped_storage().nbytes()
            print(
                json.dumps(
                    {
                        "size": size,
                        "patch": patch,
                        "channels": channels,
                        "batch": batch,
                        "input_elements": x.numel(),
                        "output_bytes": output,
                        "requests": requests,
                        "nhwc_rule_bytes": nhwc_rule(batch, size, patch, channels),
                    }
                )
            )
            sys.stdout.flush()
            del x, y
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
