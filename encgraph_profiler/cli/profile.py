"""`encgraph profile`."""

from __future__ import annotations

import signal
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from ..models.registry import DEFAULT_MODEL
from . import common
from .common import Format, err, handled, out, warn

EPILOG = """\
Examples:

  encgraph profile --model Qwen2-VL --budgets 1024,2048,4096

  encgraph profile --model qwen2.5-vl-7b --max-budget 8192 --json report.json

  encgraph profile --model Qwen2-VL --budgets 1024,2048,4096 --as sglang   # one pool per graph

  encgraph profile --model Qwen2.5-VL --budgets 1024,2048,4096,8192 --as vllm --attn varlen

  encgraph profile --model ./my-model/config.json --budgets 4096 --baseline main.json

  HF_HUB_OFFLINE=1 encgraph profile --model Qwen/Qwen2.5-VL-7B-Instruct --revision main

A Hugging Face id is read from the Hugging Face cache, else its config.json alone is downloaded
(HF_TOKEN for gated or private models; HF_HUB_OFFLINE=1 for the cache only); the report records the
revision and the snapshot commit.

Budgets count the encoder's output tokens, as vLLM does, and each family lays a budget out as vLLM's
model file does: Qwen-style towers capture B as k images of grid [1, m, ceil(B/k)*m]; tiled and
fixed-size families (InternVL, Llama 4, Idefics3, SigLIP, CLIP) as whole tiles or images, where
--max-items does not apply. `encgraph models` lists the families; the table's caption says what the
largest budget holds.

Nothing measured is lost: a budget that runs out of memory is recorded and the others go on;
Ctrl-C or SIGTERM stops the ladder and keeps the budgets already captured. Exit codes: 0 ok,
1 regression against --baseline, 2 bad input, 3 no usable GPU, 4 a budget was not measured or its
replay differed from eager, 5 bad baseline, 7 baseline not gateable, 8 --json could not be written
(the report went to the path named), 130 SIGINT, 143 SIGTERM.
"""


@handled
def profile(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled name, alias (Qwen2-VL), Hugging Face id (org/name) or path to a config.json / model directory.")] = DEFAULT_MODEL,
    revision: Annotated[str | None, typer.Option("--revision", help="With a Hugging Face id: branch, tag or commit. Default: the default branch.")] = None,
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="Token budgets, e.g. 1024,2048,4096. Default: vLLM's auto ladder.")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="Top of the auto ladder (powers of two from 64). Default 8192.")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="Images per captured batch. Default, as vLLM's: min(max budget // the family's smallest budget (64 for Qwen-style grids), smallest budget).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bfloat16, float16 or float32.")] = "bfloat16",
    attn: Annotated[str, typer.Option("--attn", help="Attention: auto (vLLM's choice: varlen for towers that pack sequences on compute capability 8.0+, else sdpa); varlen (one packed flash kernel per layer; Qwen-style, GLM, ERNIE-4.5-VL and Kimi towers); sdpa; eager; flash_attention_2.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights and dummy inputs.")] = 0,
    warmup: Annotated[int, typer.Option("--warmup", help="Eager runs per budget before capture.")] = 2,
    engine: Annotated[str | None, typer.Option("--as", help="Capture, pool and order the graphs as an engine does: vllm, vllm-legacy, sglang, tensorrt-llm. Default: the tower's own inputs, one shared pool, largest first.")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="shared: one private pool for every graph (vLLM); per-graph: one pool each.")] = None,
    order: Annotated[str | None, typer.Option("--order", help="largest-first (vLLM) or smallest-first (TensorRT-LLM).")] = None,
    capture: Annotated[str | None, typer.Option("--capture", help="plain: the tower on its own inputs; vllm: vLLM's capture inputs and steps, and its estimate.")] = None,
    max_frames_per_batch: Annotated[int, typer.Option("--max-frames-per-batch", help="With --as vllm: capture vLLM's video layout for this many frames per batch (its encoder_cudagraph_max_frames_per_batch). 0: images.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here (also when the run is cut short).")] = None,
    check_release: Annotated[bool, typer.Option("--check-release", help="At the end, drop every graph, empty the cache and report what came back to the driver.")] = False,
    memory_snapshot: Annotated[Path | None, typer.Option("--memory-snapshot", help="Also write the allocator's history of the run, for pytorch.org/memory_viz, events labelled by budget.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Gate the new report against this one (as `encgraph check`).")] = None,
    max_num_seqs: common.MaxNumSeqs = 256,
    max_num_batched_tokens: common.MaxNumBatchedTokens = 8192,
    cudagraph_mode: common.CudagraphMode = "FULL_AND_PIECEWISE",
    cudagraph_capture_sizes: common.CaptureSizes = None,
    max_cudagraph_capture_size: common.MaxCaptureSize = None,
    num_speculative_tokens: common.SpecTokens = 0,
    max_loras: common.MaxLoras = 0,
    specialize_lora: common.SpecializeLora = True,
    blackwell: common.Blackwell = False,
) -> None:
    """Capture one encoder CUDA graph per budget on this GPU and report the memory each holds."""
    from .. import report_io
    from ..check import settings_mismatches
    from ..files import check_writable
    from ..errors import ExitCode, ReportError, UsageError
    from ..ladder import resolve_budgets
    from ..request import ProfileRequest, parse_strategy, prepare

    decoder = common.decoder_settings(
        max_num_seqs, max_num_batched_tokens, cudagraph_mode, cudagraph_capture_sizes, max_cudagraph_capture_size,
        num_speculative_tokens, max_loras, specialize_lora, blackwell,
    )
    request = ProfileRequest(
        model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision, max_items=max_items, dtype=dtype, attn=attn,
        seed=seed, warmup_iterations=warmup, decoder=decoder, memory_snapshot=memory_snapshot,
        strategy=parse_strategy(engine, pool, order, capture),
        max_frames_per_batch=max_frames_per_batch, check_release=check_release,
    )
    # Everything that can be refused is refused before the GPU work starts.
    for option, path in (("--json", json_path), ("--memory-snapshot", memory_snapshot)):
        if path is not None:
            check_writable(path, option, [baseline] if baseline is not None else [])
    gate = report_io.load(baseline) if baseline is not None else None
    setup = prepare(request)
    if gate is not None:
        mismatches = settings_mismatches(gate, setup.settings)
        if mismatches:
            raise ReportError(f"--baseline {baseline} was made with other settings ({'; '.join(mismatches)}); profile with the same settings or refresh the baseline")

    report = _run(setup)
    written, write_code = _write(report, json_path)
    _show(report, output_format)
    if written is not None:
        err.print(f"report written to {written}")
    code = _outcome(report) or write_code
    if code:
        raise typer.Exit(int(code))
    if gate is not None:
        from .check import gate_against

        raise typer.Exit(gate_against(gate, report))
    raise typer.Exit(int(ExitCode.OK))


@contextmanager
def _sigterm_stops_the_ladder():
    """SIGTERM raises Terminated where SIGINT raises KeyboardInterrupt, so both keep what was measured."""
    from ..errors import Terminated

    def stop(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(setup):
    from ..capture import measure

    with _sigterm_stops_the_ladder():
        if err.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task("starting", total=None)
                return measure(setup, lambda what, done, total: bar.update(task, description=what, completed=done, total=total))

        def line(what: str, done: int, total: int) -> None:  # logs: one line per step
            err.print(f"encgraph: {what} ({done}/{total})", markup=False, highlight=False)

        return measure(setup, line)


def _write(report, json_path):
    """Write the report where asked, or else to a fallback path; return (path, exit code or None)."""
    from .. import report_io
    from ..errors import ExitCode

    if json_path is None:
        return None, None
    try:
        report_io.save(report, json_path)
        return json_path, None
    except OSError as error:
        reason = error.strerror or str(error)
    name = f"encgraph-report-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            report_io.save(report, folder / name)
        except OSError:
            continue
        warn(f"could not write {json_path} ({reason}); the report is in {folder / name}")
        return folder / name, ExitCode.NOT_WRITTEN
    warn(f"could not write {json_path} ({reason}) nor a fallback file; the report follows on stdout")
    out.print(report_io.to_json(report), markup=False, highlight=False, soft_wrap=True, end="")
    return None, ExitCode.NOT_WRITTEN


def _outcome(report):
    """The exit code a report calls for on its own, with its one-line explanation; None if all is well."""
    from ..errors import ExitCode

    if report.stopped_by in ("SIGINT", "SIGTERM"):
        err.print(f"[red]error:[/] {report.stopped_by}: stopped after {len(report.budgets)} of "
                  f"{len(report.settings.budgets)} budgets; what was measured is kept", soft_wrap=True)
        return ExitCode.INTERRUPTED if report.stopped_by == "SIGINT" else ExitCode.TERMINATED
    if not report.complete:
        failed = ", ".join(f"{u.budget} ({u.status.value.replace('_', ' ')})" for u in report.unmeasured)
        err.print(f"[red]error:[/] not measured: budget {failed}; the other budgets are in the report", soft_wrap=True)
        return ExitCode.CAPTURE
    if report.replay_mismatches:
        err.print(f"[red]error:[/] replay differed from eager at budget {', '.join(report.replay_mismatches)}: "
                  "those graphs do not compute what the eager forward does", soft_wrap=True)
        return ExitCode.CAPTURE
    return None


def _show(report, output_format: Format) -> None:
    from .. import render
    from ..report_io import to_json

    for message in report.warnings:
        warn(message)
    if output_format is Format.json:
        out.print(to_json(report), markup=False, highlight=False, soft_wrap=True, end="")
        return
    out.print(render.budget_table(report))
    out.print(render.pool_table(report))
    out.print(render.totals_line(report), markup=False)
    for line in (render.release_line(report), render.vllm_estimate_line(report)):
        if line is not None:
            out.print(line, markup=False)
    out.print(report.graph_counts.line, markup=False)
