"""`encgraph profile`."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from ..models.registry import DEFAULT_MODEL
from . import options as o
from .check import gate_against
from .options import DECODER
from .output import err, error, handled, info, keep_report, refuse_unwritable, show_report

if TYPE_CHECKING:
    from ..request import Prepared
    from ..schema import Report

EXIT_CODES = o.returns(
    {
        ExitCode.REGRESSION: "against --baseline",
        ExitCode.ENVIRONMENT: "",
        ExitCode.CAPTURE: "",
        ExitCode.BAD_REPORT: "--baseline",
        ExitCode.NOT_GATEABLE: "--baseline",
        ExitCode.NOT_WRITTEN: "--json",
    }
)

EPILOG = o.epilog(
    """\
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
Ctrl-C or SIGTERM stops the ladder and keeps the budgets already captured. When several exit codes
apply, the first of 130/143, 4, 8, then the gate's 1 or 7 is returned.
""",
    EXIT_CODES,
)


Seed = Annotated[int, typer.Option("--seed", click_type=o.WHOLE, help="Seed for weights and dummy inputs.")]
Warmup = Annotated[int, typer.Option("--warmup", click_type=o.WHOLE, help="Eager runs per budget before capture.")]
CheckRelease = Annotated[
    bool,
    typer.Option(
        "--check-release", help="At the end, drop every graph, empty the cache and report what came back to the driver."
    ),
]
MemorySnapshot = Annotated[
    Path | None,
    typer.Option(
        "--memory-snapshot",
        help="Also write the allocator's history of the run, for pytorch.org/memory_viz, events labelled by budget.",
    ),
]
Baseline = Annotated[
    Path | None, typer.Option("--baseline", help="Gate the new report against this one (as `encgraph check`).")
]


@handled
def profile(
    model: o.Model = DEFAULT_MODEL,
    revision: o.Revision = None,
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    dtype: o.Dtype = "bfloat16",
    attn: o.Attn = "auto",
    seed: Seed = 0,
    warmup: Warmup = 2,
    strategy: o.StrategyName = None,
    pool: o.PoolChoice = None,
    order: o.OrderChoice = None,
    capture: o.CaptureChoice = None,
    max_frames_per_batch: o.MaxFramesPerBatch = 0,
    json_path: o.JsonReport = None,
    check_release: CheckRelease = False,
    memory_snapshot: MemorySnapshot = None,
    output_format: o.OutputFormat = o.Format.table,
    baseline: Baseline = None,
    max_num_seqs: o.MaxNumSeqs = DECODER.max_num_seqs,
    max_num_batched_tokens: o.MaxNumBatchedTokens = DECODER.max_num_batched_tokens,
    cudagraph_mode: o.CudagraphMode = DECODER.cudagraph_mode,
    cudagraph_capture_sizes: o.CaptureSizes = None,
    max_cudagraph_capture_size: o.MaxCaptureSize = None,
    num_speculative_tokens: o.SpecTokens = DECODER.num_speculative_tokens,
    max_loras: o.MaxLoras = DECODER.max_loras,
    specialize_lora: o.SpecializeLora = DECODER.specialize_lora,
    blackwell: o.Blackwell = DECODER.blackwell,
) -> None:
    """Capture one encoder CUDA graph per budget on this GPU and report the memory each holds."""
    from .. import report_io
    from ..ladder import resolve_budgets
    from ..request import ProfileRequest, parse_strategy, prepare

    decoder = o.decoder_settings(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, cudagraph_mode=cudagraph_mode,
        cudagraph_capture_sizes=cudagraph_capture_sizes, max_cudagraph_capture_size=max_cudagraph_capture_size,
        num_speculative_tokens=num_speculative_tokens, max_loras=max_loras, specialize_lora=specialize_lora,
        blackwell=blackwell,
    )  # fmt: skip
    request = ProfileRequest(
        model=model, budgets=resolve_budgets(budgets, max_budget), revision=revision, max_items=max_items, dtype=dtype,
        attn=attn, seed=seed, warmup_iterations=warmup, decoder=decoder, memory_snapshot=memory_snapshot,
        strategy=parse_strategy(strategy, pool, order, capture), max_frames_per_batch=max_frames_per_batch,
        check_release=check_release,
    )  # fmt: skip
    # Everything that can be refused is refused before the GPU work starts.
    refuse_unwritable({"--json": json_path, "--memory-snapshot": memory_snapshot}, inputs=(baseline, model))
    gate = report_io.load(baseline) if baseline is not None else None
    setup = prepare(request)
    _refuse_other_settings(gate, setup, baseline)
    report = _run(setup)
    written = keep_report(report, json_path)
    show_report(report, output_format is o.Format.json)
    code = _outcome(report) or written
    if code is ExitCode.OK and gate is not None:
        code = gate_against(gate, report)
    raise typer.Exit(int(code))


def _refuse_other_settings(gate: Report | None, setup: Prepared, path: Path | None) -> None:
    """A --baseline made with other settings can never pass: refuse it before the GPU work."""
    from ..check import settings_mismatches
    from ..errors import ReportError

    mismatches = settings_mismatches(gate, setup.settings) if gate is not None else ()
    if mismatches:
        raise ReportError(
            f"--baseline {path} was made with other settings ({'; '.join(mismatches)}); "
            "profile with the same settings or refresh the baseline"
        )


@contextmanager
def _sigterm_stops_the_ladder() -> Iterator[None]:
    """SIGTERM raises Terminated where SIGINT raises KeyboardInterrupt, so both keep what was measured."""
    from ..errors import Terminated

    def stop(signum: int, frame: object) -> None:
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


def _run(setup: Prepared) -> Report:
    from ..capture import measure

    with _sigterm_stops_the_ladder():
        if err.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn()
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("starting", total=None)
                return measure(
                    setup, lambda what, done, total: bar.update(task, description=what, completed=done, total=total)
                )

        def line(what: str, done: int, total: int) -> None:  # logs: one line per step
            info(f"encgraph: {what} ({done}/{total})")

        return measure(setup, line)


def _outcome(report: Report) -> ExitCode:
    """The exit code the report calls for on its own, said in one line when it is not OK."""
    from ..check import assess

    assessment = assess(report)
    if not assessment.acceptable:
        error(f"the run {'; '.join(assessment.problems)}; what was measured is kept")
    return assessment.exit_code
