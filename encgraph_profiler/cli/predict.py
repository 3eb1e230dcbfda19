"""`encgraph predict`: the encoder graph pools without a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..models.registry import DEFAULT_MODEL
from .common import Format, err, handled, out

EPILOG = """\
Examples:

  encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192

  encgraph predict --model google/gemma-3-27b-it --as tensorrt-llm --json prediction.json

Each budget's captured forward runs on meta tensors (no GPU, no weights), and what it allocates and
frees goes through a model of PyTorch's CUDA caching allocator, in the pools and order the strategy
captures them. `--attn auto` predicts for a GPU of compute capability --gpu-capability (default 9.0,
an H100: the packed varlen kernel for Qwen-style towers). Checked against measured pools on an H100:
see the README. Exit codes: 0 ok, 2 bad input.
"""


@handled
def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="As for profile.")] = DEFAULT_MODEL,
    revision: Annotated[str | None, typer.Option("--revision", help="With a Hugging Face id: branch, tag or commit.")] = None,
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="Token budgets. Default: vLLM's auto ladder.")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="Top of the auto ladder.")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="Images per captured batch (as for profile).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bfloat16, float16 or float32.")] = "bfloat16",
    attn: Annotated[str, typer.Option("--attn", help="As for profile: auto, varlen, sdpa.")] = "auto",
    gpu_capability: Annotated[str, typer.Option("--gpu-capability", help="The target GPU's compute capability, for --attn auto.")] = "9.0",
    engine: Annotated[str | None, typer.Option("--as", help="Capture, pool and order as an engine does: vllm, vllm-legacy, sglang, tensorrt-llm.")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="shared or per-graph.")] = None,
    order: Annotated[str | None, typer.Option("--order", help="largest-first or smallest-first.")] = None,
    capture: Annotated[str | None, typer.Option("--capture", help="plain, or vllm (outputs copied out of the pool; vLLM's inputs).")] = None,
    max_frames_per_batch: Annotated[int, typer.Option("--max-frames-per-batch", help="With --as vllm: vLLM's video layout for this many frames per batch.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the prediction here.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
) -> None:
    """Predict the encoder graph pools of a ladder without a GPU."""
    from .. import __version__
    from ..errors import UsageError
    from ..ladder import resolve_budgets
    from ..predict import predict as run_predict
    from ..profile import ProfileRequest, prepare, strategy
    from ..report import check_writable, write_atomic
    from ..units import mib

    try:
        capability = tuple(int(part) for part in gpu_capability.split("."))
        if len(capability) != 2:
            raise ValueError
    except ValueError:
        raise UsageError(f"--gpu-capability {gpu_capability!r}: give MAJOR.MINOR, such as 9.0 or 8.6") from None
    pool, order, capture = strategy(engine, pool, order, capture)
    request = ProfileRequest(model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision, max_items=max_items,
                             dtype=dtype, attn=attn, pool=pool, order=order, capture=capture, max_frames_per_batch=max_frames_per_batch)
    if json_path is not None:
        try:
            check_writable(json_path)
        except OSError as error:
            raise UsageError(f"--json {json_path} cannot be written ({error.strerror or error}); give a writable file path") from None
    setup = prepare(request, capability)
    err.print(f"predicting {len(setup.layouts)} budgets of {setup.spec.name} ({setup.settings.attn}) on meta tensors")
    predicted = run_predict(setup)
    layouts = {layout.budget: layout for layout in setup.layouts}
    data = {
        "kind": "encgraph-prediction",
        "encgraph": __version__,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in setup.settings.__dict__.items()},
        "target_gpu_capability": gpu_capability,
        "encoder_pool_bytes": predicted[-1].pool_reserved_bytes,
        "budgets": [{"budget": p.budget, "items": layouts[p.budget].items, "input_patches": layouts[p.budget].input_patches,
                     "pool_growth_bytes": p.pool_growth_bytes, "pool_reserved_bytes": p.pool_reserved_bytes,
                     "output_bytes": p.output_bytes, "live_bytes": p.live_bytes, "allocations": p.allocations} for p in predicted],
    }
    if json_path is not None:
        write_atomic(json_path, json.dumps(data, indent=2) + "\n")
        err.print(f"prediction written to {json_path}")
    if output_format is Format.json:
        out.print(json.dumps(data, indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    s = setup.settings
    table = Table(title=f"Predicted encoder CUDA graph pools: {s.model} ({s.attn}, {s.pool}, {s.order}, {s.capture} capture)")
    for column in ("budget", "items", "patches", "pool growth MiB", "pool total MiB", "outputs MiB"):
        table.add_column(column, justify="right")
    for p in predicted:
        table.add_row(f"{p.budget:,}", str(layouts[p.budget].items), f"{layouts[p.budget].input_patches:,}",
                      mib(p.pool_growth_bytes), mib(p.pool_reserved_bytes), mib(p.output_bytes))
    out.print(table)
    out.print(f"Predicted encoder graph pools: {mib(data['encoder_pool_bytes'])} MiB ({data['encoder_pool_bytes']:,} bytes), "
              f"{len(predicted)} graphs; {setup.layouts[0].meaning}", markup=False)
