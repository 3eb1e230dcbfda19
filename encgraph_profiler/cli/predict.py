"""`encgraph predict`: the encoder graph pools without a GPU."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ExitCode
from ..models.registry import DEFAULT_MODEL
from ..request import DEFAULT_CAPABILITY
from . import options as o
from .output import handled, info, keep_report, refuse_unwritable, show_report

_CAPABILITY = ".".join(map(str, DEFAULT_CAPABILITY))

EXIT_CODES = o.returns(
    {
        ExitCode.ENVIRONMENT: "an allocator setting it does not model, a Hugging Face id it cannot fetch",
        ExitCode.NOT_WRITTEN: "--json",
    }
)

EPILOG = o.epilog(
    f"""\
Examples:

  encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192

  encgraph predict --model google/gemma-3-27b-it --as tensorrt-llm --json prediction.json

Each budget's captured forward runs on meta tensors (no GPU, no weights), and what it allocates and
frees goes through a model of PyTorch's CUDA caching allocator, in the pools and order the strategy
captures them. `--attn auto` predicts for a GPU of compute capability --gpu-capability (default
{_CAPABILITY}: the packed varlen kernel for the towers that pack sequences). The report is profile's,
marked predicted (no times, no replay, nothing outside the allocator): `check` compares predictions
with predictions, `plan --from` plans with one (give --gpu). Checked against measured pools on an
H100: see docs/prediction.md. It reads PYTORCH_CUDA_ALLOC_CONF as a CUDA run would:
expandable_segments, max_split_size_mb and max_non_split_rounding_mb are modelled;
roundup_power2_divisions and the cudaMallocAsync backend are refused.
""",
    EXIT_CODES,
)


def _capability(text: str) -> tuple[int, int]:
    from ..errors import UsageError

    try:
        major, minor = (int(part) for part in text.split(".") if part.isascii())
    except ValueError:
        raise UsageError(f"--gpu-capability {text!r}: give MAJOR.MINOR, such as {_CAPABILITY} or 8.6") from None
    return major, minor


@handled
def predict(
    model: o.Model = DEFAULT_MODEL,
    revision: o.Revision = None,
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    dtype: o.Dtype = "bfloat16",
    attn: o.Attn = "auto",
    gpu_capability: Annotated[
        str, typer.Option("--gpu-capability", help="The target GPU's compute capability, for --attn auto.")
    ] = _CAPABILITY,
    strategy: o.StrategyName = None,
    pool: o.PoolChoice = None,
    order: o.OrderChoice = None,
    capture: o.CaptureChoice = None,
    max_frames_per_batch: o.MaxFramesPerBatch = 0,
    json_path: o.JsonReport = None,
    output_format: o.OutputFormat = o.Format.table,
) -> None:
    """Predict the encoder graph pools of a ladder without a GPU."""
    from ..allocator_model import allocator_conf
    from ..ladder import resolve_budgets
    from ..predict import allocator_settings, predicted_report
    from ..request import ProfileRequest, parse_strategy, prepare

    capability = _capability(gpu_capability)
    allocator_settings(allocator_conf())  # refuse an unmodelled setting before any work
    request = ProfileRequest(
        model=model,
        budgets=resolve_budgets(budgets, max_budget),
        revision=revision,
        max_items=max_items,
        dtype=dtype,
        attn=attn,
        strategy=parse_strategy(strategy, pool, order, capture),
        max_frames_per_batch=max_frames_per_batch,
    )
    refuse_unwritable({"--json": json_path}, inputs=(model,))
    setup = prepare(request, capability)
    graphs = len(setup.layouts)
    plural = "s" if graphs != 1 else ""
    info(f"predicting {graphs} graph{plural} of {setup.spec.name} ({setup.settings.attn}) on meta tensors")
    report = predicted_report(setup, capability)
    written = keep_report(report, json_path)
    show_report(report, output_format is o.Format.json)
    raise typer.Exit(int(written))
