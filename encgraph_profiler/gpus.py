"""GPU presets for `encgraph plan`: each GPU's total memory, as CUDA reports it. No torch."""

from __future__ import annotations

import re

from .errors import UsageError

# Total memory as CUDA reports it (cudaDeviceProp.totalGlobalMem, which is
# torch.cuda.get_device_properties().total_memory), not the datasheet figure and not nvidia-smi's,
# which is larger (the H100's 81,559 MiB in nvidia-smi is 85,520,809,984 bytes; CUDA reports
# 85,017,493,504). The figure moves a little with the driver and ECC mode: a report made on the
# card itself is exact, and `plan --from` uses it unless told otherwise. Sources:
#   H100-80GB   profile report on an H100 80GB HBM3 (SXM), driver 580.159.04
#   H200-141GB  143,156 MiB, torch's printed device properties of an H200 (rounded down to MiB)
#   A100-80GB   deviceQuery on an A100-SXM4-80GB, driver 12.2 (another, driver 12.5: 85,100,068,864)
#   A100-40GB   deviceQuery on an A100-SXM4-40GB, driver 12.2
#   L40S        deviceQuery on an L40S, driver 12.4
#   L4          deviceQuery on an L4, driver 12.0
#   RTX-4090    deviceQuery on an RTX 4090 under Linux, driver 12.1
GPU_PRESETS = {
    "H100-80GB": 85_017_493_504,
    "H200-141GB": 143_156 * 1024**2,
    "A100-80GB": 84_987_740_160,
    "A100-40GB": 42_298_834_944,
    "L40S": 47_576_711_168,
    "L4": 23_612_293_120,
    "RTX-4090": 25_756_696_576,
}


def preset_named(name: str) -> str:
    """The preset ``name`` names: a preset's name, or its GPU's name alone where one preset has it
    (H200 for H200-141GB), in any case."""
    key = name.strip().lower()
    named = [k for k in GPU_PRESETS if key in (k.lower(), re.sub(r"-\d+gb$", "", k.lower()))]
    if len(named) > 1:
        raise UsageError(f"--gpu {name!r} is {' or '.join(named)}; give one")
    if not named:
        raise UsageError(f"unknown --gpu {name!r}; presets: {', '.join(GPU_PRESETS)}; or give --gpu-memory 80GiB")
    return named[0]
