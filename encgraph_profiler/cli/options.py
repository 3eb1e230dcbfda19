"""Every option that more than one command takes, declared once with its help; the output formats;
and each command's exit codes, from which its help's exit-code sentence is written."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from ..errors import ExitCode
from ..graphcounts import MODES, DecoderSettings
from ..models.base import DTYPES
from ..request import STRATEGIES

click_types: Any
if hasattr(typer.core, "_click"):  # newer typer vendors click as typer._click
    from typer._click import types as click_types
else:  # pragma: no cover - depends on the installed typer
    from click import types as click_types


class WholeNumber(click_types.IntParamType):
    """An integer option, in ASCII digits only: click reads it with int(), which also takes other
    scripts' digits (fullwidth, Arabic-Indic) that no one means on a command line."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
            self.fail(f"{value!r} is not a whole number in digits 0-9.", param, ctx)
        return super().convert(value, param, ctx)


WHOLE = WholeNumber()


class Format(str, Enum):
    table = "table"
    json = "json"


class CheckFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    bencher = "bencher"
    github = "github"


class PlanFormat(str, Enum):
    table = "table"
    json = "json"
    aisimulate = "aisimulate"


# -- what a run profiles or predicts ---------------------------------------------------------------

_STRATEGY_NAMES = ", ".join(STRATEGIES)


def _checked_model(value: Any) -> Any:
    """--model, refused before any work where it cannot name a model: empty, or a report."""
    for name in value if isinstance(value, list) else [value]:
        if name is None:
            continue
        if not name.strip():
            raise typer.BadParameter("is empty; give a bundled name, a Hugging Face id or a config path")
        if _is_report(Path(name)):
            raise typer.BadParameter(
                f"{name} is an encgraph report, not a model config; `plan --from`, `check` and `report` read reports"
            )
    return value


def _is_report(path: Path) -> bool:
    if path.suffix != ".json" or not path.is_file():
        return False
    with path.open(errors="replace") as file:
        return '"schema_version"' in file.read(4096)


def _model(more: str = "") -> Any:
    return typer.Option(
        "--model",
        "-m",
        callback=_checked_model,
        help="Bundled name, alias (Qwen2-VL), Hugging Face id (org/name) or path to a "
        f"config.json / model directory.{more}",
    )


def _budgets(more: str = "") -> Any:
    return typer.Option("--budgets", "-b", help=f"Encoder token budgets, e.g. 1024,2048,4096.{more}")


def _dtype() -> Any:
    return typer.Option("--dtype", help=f"Weight dtype: {', '.join(DTYPES)}.")


Model = Annotated[str, _model()]
ModelOrNone = Annotated[str | None, _model()]
Models = Annotated[list[str], _model(" Repeatable.")]
Revision = Annotated[
    str | None,
    typer.Option("--revision", help="With a Hugging Face id: branch, tag or commit. Default: the default branch."),
]
Budgets = Annotated[str | None, _budgets(" Default: vLLM's auto ladder.")]
BudgetLadders = Annotated[list[str], _budgets(" Repeatable: one ladder each.")]
MaxBudget = Annotated[
    int | None,
    typer.Option(
        "--max-budget",
        click_type=WHOLE,
        help="Top of vLLM's automatic ladder: the model's smallest budget (64 for most), doubling, then this. "
        "Default 8192.",
    ),
]
MaxItems = Annotated[
    int | None,
    typer.Option(
        "--max-items",
        click_type=WHOLE,
        help="Images per captured batch. Default, as vLLM's: min(max budget // the family's smallest "
        "budget (64 for Qwen-style grids), smallest budget).",
    ),
]
Dtype = Annotated[str, _dtype()]
DtypeOrNone = Annotated[str | None, _dtype()]
Attn = Annotated[
    str,
    typer.Option(
        "--attn",
        help="Attention: auto (vLLM's choice: varlen for towers that pack sequences on compute capability "
        "8.0+, else sdpa); varlen (one packed flash kernel per layer; Qwen-style, GLM, ERNIE-4.5-VL and Kimi "
        "towers); sdpa; eager; flash_attention_2.",
    ),
]
StrategyName = Annotated[
    str | None,
    typer.Option(
        "--as",
        help=f"The strategy: capture, pool and order the graphs as one of {_STRATEGY_NAMES} does. Default: "
        "the tower's own inputs, one shared pool, largest first.",
    ),
]
StrategyNames = Annotated[str, typer.Option("--as", help=f"Strategies, comma-separated: {_STRATEGY_NAMES}.")]
PoolChoice = Annotated[
    str | None,
    typer.Option("--pool", help="shared: one private pool for every graph (vLLM); per-graph: one pool each."),
]
OrderChoice = Annotated[
    str | None, typer.Option("--order", help="largest-first (vLLM) or smallest-first (TensorRT-LLM).")
]
CaptureChoice = Annotated[
    str | None,
    typer.Option(
        "--capture",
        help="plain: the tower on its own inputs; vllm: vLLM's capture inputs and steps (outputs "
        "copied out of the pool), and its estimate.",
    ),
]
MaxFramesPerBatch = Annotated[
    int,
    typer.Option(
        "--max-frames-per-batch",
        click_type=WHOLE,
        help="With --as vllm: capture vLLM's video layout for this many frames per batch "
        "(its encoder_cudagraph_max_frames_per_batch). 0: images.",
    ),
]
JsonReport = Annotated[
    Path | None,
    typer.Option(
        "--json",
        help="Write the JSON report here (what `check` and `plan --from` read); a run cut short writes "
        "what it measured.",
    ),
]
OutputFormat = Annotated[Format, typer.Option("--format", help="table, or json on stdout.")]


# -- the vLLM decoder, named as vLLM names it: `graphs` and `profile` -------------------------------

DECODER = DecoderSettings()  # vLLM's defaults
_PANEL = "vLLM decoder"
MaxNumSeqs = Annotated[
    int, typer.Option("--max-num-seqs", click_type=WHOLE, help="vLLM max_num_seqs.", rich_help_panel=_PANEL)
]
MaxNumBatchedTokens = Annotated[
    int,
    typer.Option(
        "--max-num-batched-tokens", click_type=WHOLE, help="vLLM max_num_batched_tokens.", rich_help_panel=_PANEL
    ),
]
CudagraphMode = Annotated[str, typer.Option("--cudagraph-mode", help=f"{', '.join(MODES)}.", rich_help_panel=_PANEL)]
CaptureSizes = Annotated[
    str | None,
    typer.Option(
        "--cudagraph-capture-sizes", help="Explicit decoder capture sizes, e.g. 1,2,4,8.", rich_help_panel=_PANEL
    ),
]
MaxCaptureSize = Annotated[
    int | None,
    typer.Option(
        "--max-cudagraph-capture-size", click_type=WHOLE, help="Largest decoder capture size.", rich_help_panel=_PANEL
    ),
]
SpecTokens = Annotated[
    int,
    typer.Option(
        "--num-speculative-tokens", click_type=WHOLE, help="Speculative tokens per step.", rich_help_panel=_PANEL
    ),
]
MaxLoras = Annotated[
    int, typer.Option("--max-loras", click_type=WHOLE, help="0 disables LoRA.", rich_help_panel=_PANEL)
]
SpecializeLora = Annotated[
    bool,
    typer.Option(
        "--specialize-lora/--no-specialize-lora",
        help="Capture graphs with and without LoRA (vLLM cudagraph_specialize_lora).",
        rich_help_panel=_PANEL,
    ),
]
Blackwell = Annotated[
    bool, typer.Option("--blackwell", help="Use the Blackwell capture ceiling (1024, not 512).", rich_help_panel=_PANEL)
]


def decoder_settings(
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    cudagraph_mode: str,
    cudagraph_capture_sizes: str | None,
    max_cudagraph_capture_size: int | None,
    num_speculative_tokens: int,
    max_loras: int,
    specialize_lora: bool,
    blackwell: bool,
) -> DecoderSettings:
    """The decoder options, as the commands name their parameters, read into vLLM's settings and validated."""
    from ..graphcounts import validate
    from ..units import parse_int_list

    sizes = (
        None
        if cudagraph_capture_sizes is None
        else parse_int_list(cudagraph_capture_sizes, "--cudagraph-capture-sizes")
    )
    settings = DecoderSettings(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        cudagraph_mode=cudagraph_mode.upper(),
        cudagraph_capture_sizes=sizes,
        max_cudagraph_capture_size=max_cudagraph_capture_size,
        num_speculative_tokens=num_speculative_tokens,
        max_loras=max_loras,
        specialize_lora=specialize_lora,
        blackwell=blackwell,
    )
    validate(settings)
    return settings


# -- exit codes -------------------------------------------------------------------------------------

# What any command can return: success, a refused option, a bug, a signal.
EVERY_COMMAND = (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.INTERRUPTED, ExitCode.TERMINATED)


def returns(notes: dict[ExitCode, str]) -> dict[ExitCode, str]:
    """A command's exit codes: those every command returns and its own, each with a note saying
    what it means for that command ("" for none), in order."""
    codes = {code: "" for code in EVERY_COMMAND} | notes
    return {code: codes[code] for code in sorted(codes)}


def exit_code_sentence(codes: dict[ExitCode, str]) -> str:
    """ "Exit codes: 0 ok, 1 regression (against --baseline), ..." from the enum's words."""
    parts = [f"{int(code)} {code.summary}" + (f" ({note})" if note else "") for code, note in codes.items()]
    return f"Exit codes: {', '.join(parts)}."


def epilog(text: str, codes: dict[ExitCode, str]) -> str:
    """A command's help epilog: its examples and notes, then its exit codes. A paragraph of prose is
    made one line, which the terminal wraps to its width (wrapped here too, it would be wrapped twice);
    an indented paragraph (examples) keeps its lines."""
    paragraphs = [*text.strip("\n").split("\n\n"), exit_code_sentence(codes)]
    return "\n\n".join(p if p.startswith("  ") else " ".join(p.split()) for p in paragraphs) + "\n"
