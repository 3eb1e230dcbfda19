"""`encgraph plan`: capacity planning from a report (no GPU) or from a fresh profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from enum import Enum

from .common import err, handled, out, warn


class PlanFormat(str, Enum):
    table = "table"
    json = "json"
    aisimulate = "aisimulate"

EPILOG = """\
Examples:

  encgraph plan --from examples/qwen2-vl-7b.h100.json            # plans for the GPU the report came from

  encgraph plan --from report.json --gpu-memory 80GiB --gpu-memory-utilization 0.85 --max-model-len 8192

  encgraph plan --from report.json --what-if H100-80GB,A100-40GB,L4

  encgraph plan --model Qwen2-VL --budgets 1024,2048,4096 --gpu H100-80GB   # profiles on this GPU, or predicts without one

  encgraph plan --from report.json --vllm-log server.log        # the deployment's own figures win

--vllm-log reads a vLLM server's start-up log (any release's format) and takes from it what vLLM
measured on the real deployment: weights, activation peak, non-torch memory, CUDA-graph memory,
the GPU's total and --gpu-memory-utilization; those terms show "vLLM log" as their source, and the
notes say which lines the log lacked, what each fell back to, and what the log corrects.

Sizes need a unit: 80GiB and 81920MiB are binary (GiB = 2^30 bytes); 80GB is decimal (10^9
bytes), as on datasheets. Presets are the totals CUDA reports for each card. The activation term is
the encoder's measured peak alone: the KV cache is an upper bound until --activation-memory gives
vLLM's logged peak. Exit codes: 0 fits, 6 does not fit, 2 bad input, 5 unreadable report.
"""


def _table(plan) -> Table:
    from ..units import gib

    table = Table(title=f"Capacity plan: {plan.model} on {plan.gpu}")
    table.add_column("", justify="left")
    table.add_column("term", justify="left")
    table.add_column("GiB", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("source", justify="left")
    for i, term in enumerate(plan.terms):
        table.add_row("" if i == 0 else "-", term.name, gib(term.bytes), f"{term.bytes:,}", term.source)
    table.add_section()
    table.add_row("=", "KV cache", gib(plan.kv_cache_bytes), f"{plan.kv_cache_bytes:,}", "derived")
    if plan.kv_bytes_per_token:
        table.add_row("/", "KV bytes per token", "", f"{plan.kv_bytes_per_token:,}", "config")
        table.add_row("=", "KV tokens", "", f"{plan.kv_tokens:,}", "derived")
        table.add_row("/", "max model len", "", f"{plan.max_model_len:,}", "user, vLLM log or config")
        table.add_row("=", "concurrent max-length requests", "", f"{plan.concurrency:.2f}", "derived")
    return table


def _plan_dict(plan) -> dict:
    return {
        "model": plan.model, "gpu": plan.gpu, "fits": plan.fits, "verdict": plan.verdict,
        "terms": [{"name": t.name, "bytes": t.bytes, "source": t.source} for t in plan.terms],
        "kv_cache_bytes": plan.kv_cache_bytes, "kv_bytes_per_token": plan.kv_bytes_per_token,
        "kv_tokens": plan.kv_tokens, "max_model_len": plan.max_model_len, "concurrency": plan.concurrency,
        "kv_tokens_per_graph_gib": plan.tokens_per_graph_gib, "shortfall_bytes": plan.shortfall_bytes,
        "fitting_ladder": plan.fitting_ladder, "vllm_flags": plan.vllm_flags, "notes": list(plan.notes),
        "kv_is_upper_bound": plan.kv_is_upper_bound,
    }


def _aisimulate(plan, report, utilization: float) -> str:
    """The KV-cache capacity block of an ai-dynamo AISimulate prediction config: its
    cuda_graph_reserved_bytes is the CUDA-graph memory of one rank, here every graph term of the
    plan (the encoder graphs measured, and decoder graphs where an option or a vLLM log gave them)."""
    graphs = [t for t in plan.terms if "graphs" in t.name]
    reserved = sum(t.bytes for t in graphs)
    budgets = sorted(b.budget for b in report.budgets)
    lines = [
        f"# encgraph plan for {plan.model} on {plan.gpu}: {len(budgets)} encoder CUDA graphs, largest budget "
        f"{budgets[-1] if budgets else 0} tokens ({', '.join(map(str, budgets))}), measured on {report.provenance.gpu_name}",
        "# CUDA-graph memory of one rank: " + "; ".join(f"{t.name} {t.bytes:,} B ({t.source})" for t in graphs),
        "# Place under engine.workers.<role> of an AISimulate prediction config.",
        "kv_cache:",
        "  capacity:",
        "    type: default",
        f"    memory_fraction: {utilization:g}",
        f"    cuda_graph_reserved_bytes: {reserved}",
    ]
    return "\n".join(lines)


def _load_or_profile(report_path, model, revision, budgets, max_budget, max_items, dtype):
    from .. import report_io
    from ..errors import UsageError

    if (report_path is None) == (model is None):
        raise UsageError("give --from REPORT.json, or --model (and --budgets) to profile on this GPU first")
    if report_path is not None:
        given = [name for name, value in (("--revision", revision), ("--budgets", budgets), ("--max-budget", max_budget),
                                          ("--max-items", max_items), ("--dtype", dtype)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply only with --model; a plan --from a report uses the report's settings")
        return report_io.load(report_path)
    from ..ladder import resolve_budgets
    from ..nvml import device_count
    from ..request import DEFAULT_CAPABILITY, ProfileRequest, prepare

    request = ProfileRequest(model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision,
                             max_items=max_items, dtype=dtype or "bfloat16")
    if device_count():
        from ..capture import measure

        err.print("profiling first on this GPU...")
        return measure(prepare(request))
    from ..predict import predicted_report

    major, minor = DEFAULT_CAPABILITY
    err.print(f"no GPU here: predicting the encoder graphs instead, for a GPU of compute capability {major}.{minor} (as `encgraph predict`)")
    return predicted_report(prepare(request, DEFAULT_CAPABILITY), DEFAULT_CAPABILITY)


@handled
def plan(
    report_path: Annotated[Path | None, typer.Option("--from", help="A profile report (JSON). No GPU needed.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Profile this model first on this GPU; without a GPU, predict it (then give --gpu).")] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="With --model and a Hugging Face id: branch, tag or commit.")] = None,
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="With --model: token budgets.")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="With --model: auto ladder top.")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="With --model: images per batch.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="With --model: weight dtype (default bfloat16).")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Preset: H100-80GB, H200-141GB, A100-80GB, A100-40GB, L40S, L4, RTX-4090. Default: the report's GPU.")] = None,
    gpu_memory: Annotated[str | None, typer.Option("--gpu-memory", help="Total GPU memory instead of a preset, e.g. 80GiB.")] = None,
    utilization: Annotated[str | None, typer.Option("--gpu-memory-utilization", help="vLLM's fraction of GPU memory to use. Default: the --vllm-log's, else 0.9.")] = None,
    kv_cache_dtype: Annotated[str, typer.Option("--kv-cache-dtype", help="auto (the model dtype), bfloat16, float16, fp8.")] = "auto",
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="Tokens per request. Default: the model's max positions.")] = None,
    margin: Annotated[str, typer.Option("--margin", help="Extra headroom to keep free, e.g. 1GiB.")] = "0",
    decoder_graph_memory: Annotated[str | None, typer.Option("--decoder-graph-memory", help="Decoder CUDA-graph memory, e.g. 1.5GiB.")] = None,
    activation_memory: Annotated[str | None, typer.Option("--activation-memory", help="Activation peak. Default: the measured eager peak of the largest budget.")] = None,
    vllm_log: Annotated[Path | None, typer.Option("--vllm-log", help="A vLLM start-up log: its memory figures replace measured and counted ones.")] = None,
    what_if: Annotated[str | None, typer.Option("--what-if", help="Compare GPUs or utilizations, e.g. H100-80GB,L4 or 0.8,0.9.")] = None,
    output_format: Annotated[PlanFormat, typer.Option("--format", help="table; json; or aisimulate, the KV-capacity block of an AISimulate config, on stdout.")] = PlanFormat.table,
) -> None:
    """Plan KV-cache capacity with the measured encoder graphs, and print the vLLM flags."""
    from ..errors import ExitCode, UsageError
    from ..plan import PlanInputs, check_kv_cache_dtype, gpu_memory as resolve_gpu, parse_utilization, plan as make_plan
    from ..plan import LOG
    from ..units import parse_size
    from ..vllm_log import read as read_vllm_log

    # Every option is read before a report is loaded or a profile runs.
    log = read_vllm_log(vllm_log) if vllm_log is not None else None
    chosen_gpu = resolve_gpu(gpu, gpu_memory) if gpu or gpu_memory else None
    if chosen_gpu is None and log is not None and log.total_bytes is not None:
        chosen_gpu = ("the logged GPU", log.total_bytes, LOG)
    check_kv_cache_dtype(kv_cache_dtype)
    if max_model_len is not None and max_model_len <= 0:
        raise UsageError("--max-model-len must be a positive number of tokens")
    if utilization is not None:
        fraction, fraction_source = parse_utilization(utilization), "user"
    elif log is not None and log.utilization is not None:
        fraction, fraction_source = log.utilization, LOG
    else:
        fraction, fraction_source = 0.9, "default"
    common = dict(
        log=log,
        kv_cache_dtype=kv_cache_dtype, max_model_len=max_model_len, margin_bytes=parse_size(margin, "--margin"),
        decoder_graph_bytes=None if decoder_graph_memory is None else parse_size(decoder_graph_memory, "--decoder-graph-memory"),
        activation_bytes=None if activation_memory is None else parse_size(activation_memory, "--activation-memory"),
    )
    # Each what-if item is a utilization (its GPU: the plan's) or a GPU (its utilization: the plan's).
    what_ifs = [
        (None, parse_utilization(item)) if item.replace(".", "", 1).isdigit() else (resolve_gpu(item, None), fraction)
        for item in (p.strip() for p in what_if.split(","))
    ] if what_if else []
    report = _load_or_profile(report_path, model, revision, budgets, max_budget, max_items, dtype)
    plan_gpu = chosen_gpu or resolve_gpu(None, None, report)
    inputs = PlanInputs(*plan_gpu, fraction, utilization_source=fraction_source, **common)
    scenarios = [PlanInputs(*(scenario_gpu or plan_gpu), scenario_fraction, utilization_source="user", **common)
                 for scenario_gpu, scenario_fraction in what_ifs]
    result = make_plan(report, inputs)
    compared = [make_plan(report, s) for s in scenarios]
    if output_format is PlanFormat.aisimulate:
        out.print(_aisimulate(result, report, inputs.utilization), markup=False, highlight=False, soft_wrap=True)
    elif output_format is PlanFormat.json:
        data = _plan_dict(result)
        if compared:
            data["what_if"] = [{"utilization": s.utilization, **_plan_dict(p)} for s, p in zip(scenarios, compared)]
        out.print(json.dumps(data, indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        _render(result, scenarios, compared)
    raise typer.Exit(int(ExitCode.OK if result.fits else ExitCode.DOES_NOT_FIT))


def _render(result, scenarios, compared) -> None:
    from ..units import gib

    for note in result.notes:
        warn(note)
    out.print(_table(result))
    style = "green" if result.fits else "bold red"
    out.print(f"[{style}]{result.verdict}[/]")
    if not result.fits:
        if result.fitting_ladder:
            out.print(f"largest ladder of this report that fits (pool estimated): {','.join(map(str, result.fitting_ladder))}")
        elif result.fitting_ladder == ():
            out.print("only without encoder graphs would it fit")
        else:
            out.print("no ladder of this report fits, nor does running without encoder graphs")
    if result.tokens_per_graph_gib:
        out.print(f"each GiB of graph pool costs {result.tokens_per_graph_gib:,} KV tokens")
    if result.fits:
        out.print("vLLM flags (--kv-cache-memory is an upper bound: see the activation note):" if result.kv_is_upper_bound
                  else "vLLM flags:", markup=False)
        out.print(f"  {result.vllm_flags}", markup=False, soft_wrap=True)
    if compared:
        table = Table(title="What if")
        for name in ("GPU", "utilization", "KV cache GiB", "KV tokens", "requests", "verdict"):
            table.add_column(name)
        for s, p in zip(scenarios, compared):
            table.add_row(s.gpu, f"{s.utilization:g}", gib(p.kv_cache_bytes), "" if p.kv_tokens is None else f"{p.kv_tokens:,}",
                          "" if p.concurrency is None else f"{p.concurrency:.2f}", p.verdict)
        out.print(table)
