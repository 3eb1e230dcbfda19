"""`encgraph plan`: capacity planning from a report (no GPU) or from a fresh profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from . import options as o
from .options import PlanFormat
from .output import emit, emit_json, handled, info, show, warn

if TYPE_CHECKING:
    from ..plan import CapacityPlan, PlanInputs
    from ..schema import Report
    from ..vllm_log import VllmLog

EXIT_CODES = o.returns({ExitCode.ENVIRONMENT: "with --model", ExitCode.BAD_REPORT: "", ExitCode.DOES_NOT_FIT: ""})

EPILOG = o.epilog("""\
Examples:

  encgraph plan --from examples/qwen2-vl-7b.h100.json            # plans for the GPU the report came from

  encgraph plan --from report.json --gpu-memory 80GiB --gpu-memory-utilization 0.85 --max-model-len 8192

  encgraph plan --from report.json --what-if H100-80GB,A100-40GB,L4

  encgraph plan --model Qwen2-VL --budgets 1024,2048,4096 --gpu H100-80GB   # profiles on this GPU, or predicts without one

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
""", EXIT_CODES)


def _load_or_profile(report_path: Path | None, model: str | None, revision: str | None, budgets: str | None,
                     max_budget: int | None, max_items: int | None, dtype: str | None) -> Report:
    from .. import report_io
    from ..errors import UsageError

    if report_path is not None and model is None:
        given = [name for name, value in (("--revision", revision), ("--budgets", budgets), ("--max-budget", max_budget),
                                          ("--max-items", max_items), ("--dtype", dtype)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply only with --model; a plan --from a report uses the report's settings")
        return report_io.load(report_path)
    if model is None or report_path is not None:
        raise UsageError("give --from REPORT.json, or --model (and --budgets) to profile on this GPU first")
    from ..ladder import resolve_budgets
    from ..nvml import device_count
    from ..request import DEFAULT_CAPABILITY, ProfileRequest, prepare

    request = ProfileRequest(model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision,
                             max_items=max_items, dtype=dtype or "bfloat16")
    if device_count():
        from ..capture import measure

        info("profiling first on this GPU...")
        return measure(prepare(request))
    from ..predict import predicted_report

    capability = ".".join(map(str, DEFAULT_CAPABILITY))
    info(f"no GPU here: predicting the encoder graphs instead, for a GPU of compute capability {capability} "
         "(as `encgraph predict`)")
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


@handled
def plan(
    report_path: Annotated[Path | None, typer.Option("--from", help="A profile report (JSON). No GPU needed.")] = None,
    model: o.ModelOrNone = None,
    revision: o.Revision = None,
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    dtype: o.DtypeOrNone = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Preset: H100-80GB, H200-141GB, A100-80GB, A100-40GB, L40S, L4, "
                                            "RTX-4090. Default: the report's GPU.")] = None,
    gpu_memory: Annotated[str | None, typer.Option("--gpu-memory", help="Total GPU memory instead of a preset, e.g. "
                                                   "80GiB.")] = None,
    utilization: Annotated[str | None, typer.Option("--gpu-memory-utilization", help="vLLM's fraction of GPU memory to "
                                                    "use. Default: the --vllm-log's, else 0.9.")] = None,
    kv_cache_dtype: Annotated[str, typer.Option("--kv-cache-dtype", help="auto (the model dtype), bfloat16, float16, "
                                                "fp8.")] = "auto",
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="Tokens per request. Default: the model's "
                                                      "max positions.")] = None,
    margin: Annotated[str, typer.Option("--margin", help="Extra headroom to keep free, e.g. 1GiB.")] = "0",
    decoder_graph_memory: Annotated[str | None, typer.Option("--decoder-graph-memory", help="Decoder CUDA-graph memory, "
                                                             "e.g. 1.5GiB.")] = None,
    activation_memory: Annotated[str | None, typer.Option("--activation-memory", help="Activation peak. Default: the "
                                                          "measured eager peak of the largest budget.")] = None,
    vllm_log: Annotated[Path | None, typer.Option("--vllm-log", help="A vLLM start-up log: its memory figures replace "
                                                  "measured and counted ones.")] = None,
    what_if: Annotated[str | None, typer.Option("--what-if", help="Compare GPUs or utilizations, e.g. H100-80GB,L4 or "
                                                "0.8,0.9.")] = None,
    output_format: Annotated[PlanFormat, typer.Option("--format", help="table; json; or aisimulate, the KV-capacity "
                                                      "block of an AISimulate config, on stdout.")] = PlanFormat.table,
) -> None:
    """Plan KV-cache capacity with the measured encoder graphs, and print the vLLM flags."""
    from ..errors import UsageError
    from ..plan import LOG, PlanInputs, check_kv_cache_dtype, gpu_memory as resolve_gpu, parse_what_if, plan as make_plan
    from ..vllm_log import read as read_vllm_log

    # Every option is read before a report is loaded or a profile runs.
    log = read_vllm_log(vllm_log) if vllm_log is not None else None
    chosen_gpu = resolve_gpu(gpu, gpu_memory) if gpu or gpu_memory else None
    if chosen_gpu is None and log is not None and log.total_bytes is not None:
        chosen_gpu = ("the logged GPU", log.total_bytes, LOG)
    check_kv_cache_dtype(kv_cache_dtype)
    if max_model_len is not None and max_model_len <= 0:
        raise UsageError("--max-model-len must be a positive number of tokens")
    fraction, fraction_source = _utilization(utilization, log)
    margin_bytes, decoder_bytes = _size(margin, "--margin") or 0, _size(decoder_graph_memory, "--decoder-graph-memory")
    activation_bytes = _size(activation_memory, "--activation-memory")
    what_ifs = parse_what_if(what_if, fraction) if what_if else []
    report = _load_or_profile(report_path, model, revision, budgets, max_budget, max_items, dtype)
    label, total, total_source = chosen_gpu or resolve_gpu(None, None, report)
    inputs = PlanInputs(label, total, total_source, fraction, utilization_source=fraction_source, log=log,
                        kv_cache_dtype=kv_cache_dtype, max_model_len=max_model_len, margin_bytes=margin_bytes,
                        decoder_graph_bytes=decoder_bytes, activation_bytes=activation_bytes)
    scenarios = [inputs.scenario(scenario_gpu, scenario_fraction) for scenario_gpu, scenario_fraction in what_ifs]
    _render(make_plan(report, inputs), report, inputs, scenarios, [make_plan(report, s) for s in scenarios], output_format)


def _render(result: CapacityPlan, report: Report, inputs: PlanInputs, scenarios: list[PlanInputs],
            compared: list[CapacityPlan], output_format: PlanFormat) -> None:
    from .. import render
    from ..plan import aisimulate, as_dict

    if output_format is PlanFormat.aisimulate:
        emit(aisimulate(result, report, inputs.utilization))
    elif output_format is PlanFormat.json:
        data = as_dict(result)
        if compared:
            data["what_if"] = [{"utilization": s.utilization, **as_dict(p)} for s, p in zip(scenarios, compared, strict=True)]
        emit_json(data)
    else:
        for note in result.notes:
            warn(note)
        show(render.plan_table(result), *render.plan_lines(result))
        if compared:
            show(render.what_if_table(scenarios, compared))
    raise typer.Exit(int(ExitCode.OK if result.fits else ExitCode.DOES_NOT_FIT))
