"""`encgraph plan`: capacity planning from a report (no GPU) or from a fresh profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode, UsageError
from ..gpus import GPU_PRESETS
from ..plan import (
    DEFAULT_UTILIZATION,
    KV_DTYPE_BYTES,
    LOG,
    PlanInputs,
    check_kv_cache_dtype,
    parse_what_if,
)
from ..plan import gpu_memory as resolve_gpu
from ..plan import plan as make_plan
from ..vllm_log import read as read_vllm_log
from . import options as o
from .options import PlanFormat
from .output import emit, emit_json, handled, info, show, warn

if TYPE_CHECKING:
    from ..plan import CapacityPlan, PlanInputs
    from ..schema import Report
    from ..vllm_log import VllmLog

EXIT_CODES = o.returns({ExitCode.ENVIRONMENT: "with --model", ExitCode.BAD_REPORT: "", ExitCode.DOES_NOT_FIT: ""})

EPILOG = o.epilog(
    """\
Examples:

  encgraph plan --from examples/qwen2-vl-7b.h100.json            # plans for the GPU the report came from

  encgraph plan --from report.json --gpu-memory 80GiB --gpu-memory-utilization 0.85 --max-model-len 8192

  encgraph plan --from report.json --what-if H100-80GB,A100-40GB,L4

  encgraph plan --model Qwen2-VL --budgets 1024,2048,4096 --gpu H100-80GB   # profiles here, or predicts without a GPU

  encgraph plan --from report.json --vllm-log server.log        # the deployment's own figures win

Instead of --from, --model (with --revision, --budgets, --max-budget, --max-items and --dtype)
profiles first on this GPU, or without one predicts (then give --gpu).

--vllm-log reads a vLLM server's start-up log (any release's format) and takes from it what vLLM
measured on the real deployment: weights, activation peak, non-torch memory, CUDA-graph memory,
the GPU's total and --gpu-memory-utilization; those terms show "vLLM log" as their source, and the
notes say which lines the log lacked, what each fell back to, and what the log corrects.

Sizes need a unit: 80GiB and 81920MiB are binary (GiB = 2^30 bytes); 80GB is decimal (10^9
bytes), as on datasheets. Presets are the totals CUDA reports for each card. The activation term is
the encoder's measured peak alone: the KV cache is an upper bound until --activation-memory gives
vLLM's logged peak.
""",
    EXIT_CODES,
)


def _load_or_profile(
    report_path: Path | None,
    model: str | None,
    revision: str | None,
    budgets: str | None,
    max_budget: int | None,
    max_items: int | None,
    dtype: str | None,
    gpu_given: bool,
) -> Report:
    from .. import report_io

    if report_path is not None and model is None:
        given = [
            name
            for name, value in (
                ("--revision", revision),
                ("--budgets", budgets),
                ("--max-budget", max_budget),
                ("--max-items", max_items),
                ("--dtype", dtype),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} apply only with --model; a plan --from a report uses the report's settings"
            )
        return report_io.load(report_path)
    if model is None:
        raise UsageError("give --from REPORT.json, or --model (and --budgets) to profile on this GPU first")
    if report_path is not None:
        raise UsageError("give --from REPORT.json or --model, not both: a plan reads a report, or profiles first")
    from ..ladder import resolve_budgets
    from ..nvml import device_count
    from ..request import DEFAULT_CAPABILITY, ProfileRequest, prepare

    request = ProfileRequest(
        model=model,
        budgets=resolve_budgets(budgets, max_budget),
        revision=revision,
        max_items=max_items,
        dtype=dtype or "bfloat16",
    )
    if device_count():
        from ..capture import measure

        info("profiling first on this GPU...")
        return measure(prepare(request))
    if not gpu_given:  # said before predicting, not after
        raise UsageError("no GPU here, so plan --model predicts, for no GPU in particular: give --gpu or --gpu-memory")
    from ..predict import predicted_report

    capability = ".".join(map(str, DEFAULT_CAPABILITY))
    info(
        f"no GPU here: predicting the encoder graphs instead, for a GPU of compute capability {capability} "
        "(as `encgraph predict`)"
    )
    return predicted_report(prepare(request, DEFAULT_CAPABILITY), DEFAULT_CAPABILITY)


def _utilization(text: str | None, log: VllmLog | None) -> tuple[float, str]:
    """--gpu-memory-utilization, else the vLLM log's, else vLLM's default; with its source."""
    from ..plan import DEFAULT_UTILIZATION, LOG, parse_utilization

    if text is not None:
        return parse_utilization(text), "user"
    if log is not None and log.utilization is not None:
        return log.utilization, LOG
    return DEFAULT_UTILIZATION, "default"


def _size(text: str | None, option: str) -> int | None:
    from ..units import parse_size

    return None if text is None else parse_size(text, option)


From = Annotated[Path | None, typer.Option("--from", help="A profile report (JSON). No GPU needed.")]
Gpu = Annotated[str | None, typer.Option("--gpu", help=f"Preset: {', '.join(GPU_PRESETS)}. Default: the report's GPU.")]
GpuMemory = Annotated[
    str | None, typer.Option("--gpu-memory", help="Total GPU memory instead of a preset, e.g. 80GiB.")
]
Utilization = Annotated[
    str | None,
    typer.Option(
        "--gpu-memory-utilization",
        help=f"vLLM's fraction of GPU memory to use. Default: the --vllm-log's, else {DEFAULT_UTILIZATION}.",
    ),
]
KvCacheDtype = Annotated[
    str, typer.Option("--kv-cache-dtype", help=f"auto (the model dtype), {', '.join(KV_DTYPE_BYTES)}.")
]
MaxModelLen = Annotated[
    int | None,
    typer.Option("--max-model-len", click_type=o.WHOLE, help="Tokens per request. Default: the model's max positions."),
]
Margin = Annotated[str, typer.Option("--margin", help="Extra headroom to keep free, e.g. 1GiB.")]
DecoderGraphMemory = Annotated[
    str | None, typer.Option("--decoder-graph-memory", help="Decoder CUDA-graph memory, e.g. 1.5GiB.")
]
ActivationMemory = Annotated[
    str | None,
    typer.Option(
        "--activation-memory", help="Activation peak. Default: the measured eager peak of the largest budget."
    ),
]
VllmLogPath = Annotated[
    Path | None,
    typer.Option("--vllm-log", help="A vLLM start-up log: its memory figures replace measured and counted ones."),
]
WhatIf = Annotated[
    str | None, typer.Option("--what-if", help="Compare GPUs or utilizations, e.g. H100-80GB,L4 or 0.8,0.9.")
]
PlanOutput = Annotated[
    PlanFormat,
    typer.Option(
        "--format", help="table; json; or aisimulate, the KV-capacity block of an AISimulate config, on stdout."
    ),
]


@handled
def plan(
    report_path: From = None,
    model: o.ModelOrNone = None,
    revision: o.Revision = None,
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    dtype: o.DtypeOrNone = None,
    gpu: Gpu = None,
    gpu_memory: GpuMemory = None,
    utilization: Utilization = None,
    kv_cache_dtype: KvCacheDtype = "auto",
    max_model_len: MaxModelLen = None,
    margin: Margin = "0",
    decoder_graph_memory: DecoderGraphMemory = None,
    activation_memory: ActivationMemory = None,
    vllm_log: VllmLogPath = None,
    what_if: WhatIf = None,
    output_format: PlanOutput = PlanFormat.table,
) -> None:
    """Plan KV-cache capacity with the measured encoder graphs, and print the vLLM flags."""
    # Every option is read before a report is loaded or a profile runs.
    log = read_vllm_log(vllm_log) if vllm_log is not None else None
    for option, value in (("--gpu", gpu), ("--gpu-memory", gpu_memory), ("--what-if", what_if)):
        if value is not None and not value.strip():
            raise UsageError(f"{option} is empty; give a value, or leave the option out")
    chosen_gpu = resolve_gpu(gpu, gpu_memory) if gpu or gpu_memory else None
    if chosen_gpu is None and log is not None and log.total_bytes is not None:
        chosen_gpu = ("the logged GPU", log.total_bytes, LOG)
    check_kv_cache_dtype(kv_cache_dtype)
    if max_model_len is not None and max_model_len <= 0:
        raise UsageError("--max-model-len must be a positive number of tokens")
    fraction, fraction_source = _utilization(utilization, log)
    margin_bytes = _size(margin, "--margin") or 0
    decoder_bytes = _size(decoder_graph_memory, "--decoder-graph-memory")
    activation_bytes = _size(activation_memory, "--activation-memory")
    what_ifs = parse_what_if(what_if, fraction) if what_if else []
    report = _load_or_profile(
        report_path, model, revision, budgets, max_budget, max_items, dtype, gpu_given=chosen_gpu is not None
    )
    named = [scenario_gpu for scenario_gpu, _ in what_ifs if scenario_gpu is not None]
    if chosen_gpu is None and report.predicted and named:  # a prediction is for no GPU: the first one named
        chosen_gpu = named[0]
    label, total, total_source = chosen_gpu or resolve_gpu(None, None, report)
    inputs = PlanInputs(
        label, total, total_source, fraction, utilization_source=fraction_source, log=log,
        kv_cache_dtype=kv_cache_dtype, max_model_len=max_model_len, margin_bytes=margin_bytes,
        decoder_graph_bytes=decoder_bytes, activation_bytes=activation_bytes,
    )  # fmt: skip
    scenarios = [inputs.scenario(scenario_gpu, scenario_fraction) for scenario_gpu, scenario_fraction in what_ifs]
    compared = [make_plan(report, scenario) for scenario in scenarios]
    _render(make_plan(report, inputs), report, inputs, scenarios, compared, output_format)


def _render(
    result: CapacityPlan,
    report: Report,
    inputs: PlanInputs,
    scenarios: list[PlanInputs],
    compared: list[CapacityPlan],
    output_format: PlanFormat,
) -> None:
    from .. import render
    from ..plan_formats import aisimulate, as_dict

    if output_format is PlanFormat.aisimulate:
        emit(aisimulate(result, report, inputs.utilization))
    elif output_format is PlanFormat.json:
        data = as_dict(result)
        if compared:
            data["what_if"] = [
                {"utilization": s.utilization, **as_dict(p)} for s, p in zip(scenarios, compared, strict=True)
            ]
        emit_json(data)
    else:
        for note in result.notes:
            warn(note)
        show(render.plan_table(result), *render.plan_lines(result))
        if compared:
            show(render.what_if_table(scenarios, compared))
    raise typer.Exit(int(ExitCode.OK if result.fits else ExitCode.DOES_NOT_FIT))
