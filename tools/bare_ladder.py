"""Independent check of `encgraph profile`, and the bare baseline for its wall time.

Written against torch and transformers only (no encgraph code): the builder of the config's family
(tools/bare_families/, one module per family) makes the tower and every budget's inputs, laid out as
vLLM lays them out; each is warmed up on the capture stream, then synchronize + empty_cache, and the
whole ladder (largest first, one pool) is measured by a different method from encgraph's: the caching
allocator's reserved-bytes delta and this process's NVML delta. Nothing from the warm-up stays
referenced when the baseline is taken. The reserved delta counts every pool; ``graph_pool_bytes`` is the graphs'
own pool alone, summed from the allocator's segment list, and ``segments_made_elsewhere`` lists the
segments the captures made outside it (pool, bytes, stream, the sizes of the blocks still allocated).

    python tools/bare_ladder.py configs/qwen2-vl-7b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/gemma-3-27b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/llama-4-scout-17b-16e.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/gemma-4-31b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/qwen2-vl-7b.json 1024,2048,4096,8192 varlen > bare.json
    python tools/bare_ladder.py configs/kimi-vl-a3b.json 1024,2048,4096,8192 varlen > bare.json  # kimi_vl form
    python tools/bare_ladder.py configs/kimi-k2.5.json 1024,2048,4096,8192 varlen > bare.json  # kimi_k25 form
    python tools/bare_ladder.py step3p7.json 1024,2048,4096,8192 > bare.json  # Step3p7Config().to_dict()
    python tools/bare_ladder.py step3-vl-10b.json 1024,2048,4096,8192 > bare.json  # StepFun's step_robotics form
    python tools/bare_ladder.py deepseek-ocr-2.json 1024,2048,4096,8192 > bare.json  # transformers' deepseek_ocr2 form
    python tools/bare_ladder.py configs/kimi-k3.json 1024,2048,4096,8192 varlen > bare.json  # kimi_k3 form
    python tools/bare_ladder.py configs/minimax-m3.json 1024,2048,4096,8192 varlen > bare.json
    python tools/bare_ladder.py configs/deepseek-v4.1-flash.json 1024,2048,4096,8192 varlen > bare.json
    python tools/bare_ladder.py configs/deepseek-vl2.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/deepseek-ocr.json 1024,2048,4096,8192 > bare.json  # two paths
    python tools/bare_ladder.py configs/minicpm-v-2-6.json 1024,2048,4096,8192 > bare.json  # capture axes

With ``varlen`` (the families that pack their images into one sequence), attention is ATen's flash
kernel over the packed images, called here directly, the segments on the device and the longest image
given.
"""

import json
import os
import sys
import time

started = time.perf_counter()

import bare_families  # noqa: E402  (tools/ is this script's folder, first on sys.path)
import pynvml  # noqa: E402
import torch  # noqa: E402


def process_used(handle):
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == os.getpid():
            return int(proc.usedGpuMemory)
    raise SystemExit("NVML does not list this process")


def main(config_path, budget_text, attn="sdpa", warmup=2):
    budgets = sorted((int(b) for b in budget_text.split(",")), reverse=True)
    with open(config_path) as file:
        data = json.load(file)
    forward, runs, items = bare_families.build_ladder(data, budgets, attn)
    stream = torch.cuda.Stream()
    for kwargs in runs:
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmup):
                forward(**kwargs)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    reserved0 = torch.cuda.memory_stats()["reserved_bytes.all.current"]
    used0 = process_used(handle)
    before = {s["address"] for s in torch.cuda.memory_snapshot()}
    pool = torch.cuda.graph_pool_handle()
    graphs = []
    for kwargs in runs:
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=pool, stream=stream):
            out = forward(**kwargs)
        graphs.append((graph, out))
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    reserved1 = torch.cuda.memory_stats()["reserved_bytes.all.current"]
    used1 = process_used(handle)
    # the graphs' own pool, apart from what the captures added to the default pool
    segments = torch.cuda.memory_snapshot()
    pool_bytes = sum(s["total_size"] for s in segments if tuple(s["segment_pool_id"]) == tuple(pool))
    # segments the captures made anywhere else, with the blocks still allocated in them
    elsewhere = [
        {
            "pool": list(s["segment_pool_id"]),
            "bytes": s["total_size"],
            "stream": s["stream"],
            "allocated_blocks": [b["size"] for b in s["blocks"] if b["state"] == "active_allocated"],
        }
        for s in segments
        if s["address"] not in before and tuple(s["segment_pool_id"]) != tuple(pool)
    ]
    json.dump(
        {
            "budgets": budgets,
            "graphs": len(runs),
            "items": items,
            "reserved_delta_bytes": reserved1 - reserved0,
            "graph_pool_bytes": pool_bytes,
            "segments_made_elsewhere": elsewhere,
            "capture_stream": stream.cuda_stream,
            "nvml_process_delta_bytes": used1 - used0,
            "wall_s": time.perf_counter() - started,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main(*sys.argv[1:4])
