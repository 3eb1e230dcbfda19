"""On a CUDA machine: how much workspace cuDNN's patch-embedding convolution takes from the caching
allocator, for the image sizes, patch sizes and widths the bundled towers use, batch by batch.
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
SHAPES = ((384, 14, 1152), (336, 14, 1024), (224, 14, 1024), (896, 14, 1152), (512, 16, 768),
          (448, 14, 1024), (364, 14, 1152), (224, 16, 768))
BATCHES = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 16, 20, 24, 28, 32, 48, 64, 96, 128)


def nhwc_rule(batch: int, size: int, patch: int, channels: int, element: int = 2) -> int:
    """Input and output in NHWC with the 3 input channels padded to 8, and the weight likewise."""
    out = size // patch
    return element * (batch * size * size * 8 + batch * out * out * channels + channels * patch * patch * 8) + 16


def main() -> None:
    torch.backends.cudnn.benchmark = False
    print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "gpu": torch.cuda.get_device_name()}))
    for size, patch, channels in SHAPES:
        conv = torch.nn.Conv2d(3, channels, patch, stride=patch, device="cuda", dtype=torch.bfloat16)
        for batch in BATCHES:
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
            print(json.dumps({"size": size, "patch": patch, "channels": channels, "batch": batch,
                              "input_elements": x.numel(), "output_bytes": output, "requests": requests,
                              "nhwc_rule_bytes": nhwc_rule(batch, size, patch, channels)}))
            sys.stdout.flush()
            del x, y
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
