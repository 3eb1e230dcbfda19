"""`encgraph predict`: the encoder graph pools without a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ..models.registry import DEFAULT_MODEL
from .common import Format, err, handled, out, warn

EPILOG = """\
Examples:

  encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192

  encgraph predict --model google/gemma-3-27b-it --as tensorrt-llm --json prediction.json

Each budget's captured forward runs on meta tensors (no GPU, no weights), and what it allocates and
frees goes through a model of PyTorch's CUDA caching allocator, in the pools and order the strategy
captures them. `--attn auto` predicts for a GPU of compute capability --gpu-capability (default 9.0,
an H100: the packed varlen kernel for the towers that pack sequences). The report is profile's, marked predicted
(no times, no replay, nothing outside the allocator): `check` compares predictions with predictions,
`plan --from` plans with one (give --gpu). Checked against measured pools on an H100: see the README.
It reads PYTORCH_CUDA_ALLOC_CONF as a CUDA run would: expandable_segments, max_split_size_mb and
max_non_split_rounding_mb are modelled; roundup_power2_divisions and the cudaMallocAsync backend
are refused.
Exit codes: 0 ok, 2 bad input, 3 such an allocator setting.
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
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the prediction here: a report marked predicted, which check and plan read.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
) -> None:
    """Predict the encoder graph pools of a ladder without a GPU."""
    from .. import render, report_io
    from ..errors import UsageError
    from ..files import check_writable
    from ..ladder import resolve_budgets
    from ..allocator_model import allocator_conf
    from ..predict import allocator_settings, predicted_report
    from ..request import ProfileRequest, parse_strategy, prepare

    try:
        capability = tuple(int(part) for part in gpu_capability.split("."))
        if len(capability) != 2:
            raise ValueError
    except ValueError:
        raise UsageError(f"--gpu-capability {gpu_capability!r}: give MAJOR.MINOR, such as 9.0 or 8.6") from None
    allocator_settings(allocator_conf())  # refuse an unmodelled setting before any work
    request = ProfileRequest(model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision, max_items=max_items,
                             dtype=dtype, attn=attn, strategy=parse_strategy(engine, pool, order, capture),
                             max_frames_per_batch=max_frames_per_batch)
    if json_path is not None:
        check_writable(json_path, "--json")
    setup = prepare(request, capability)
    err.print(f"predicting {len(setup.layouts)} budgets of {setup.spec.name} ({setup.settings.attn}) on meta tensors")
    report = predicted_report(setup, capability)
    for message in report.warnings:
        warn(message)
    if json_path is not None:
        report_io.save(report, json_path)
        err.print(f"report written to {json_path}")
    if output_format is Format.json:
        out.print(report_io.to_json(report), markup=False, highlight=False, soft_wrap=True, end="")
        return
    out.print(render.budget_table(report))
    out.print(render.pool_table(report))
    out.print(render.totals_line(report), markup=False)
