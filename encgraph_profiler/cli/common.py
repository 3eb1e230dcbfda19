"""What every command shares: the consoles, the one catch point, and the decoder options."""

from __future__ import annotations

import functools
import os
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import EncgraphError, ExitCode, Terminated, UsageError

out = Console(highlight=False)  # results: tables, or machine output with no markup
if not out.is_terminal:
    out.width = 160  # piped or captured: keep the wide tables readable instead of 80 columns
err = Console(stderr=True, highlight=False)  # progress, warnings, errors


class Format(str, Enum):
    table = "table"
    json = "json"


def handled(command):
    """The one catch point: every error becomes one line on stderr and its exit code.
    ENCGRAPH_DEBUG=1 shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except EncgraphError as error:
            if os.environ.get("ENCGRAPH_DEBUG"):
                raise
            fail(str(error), error.exit_code)
        except KeyboardInterrupt as interrupt:
            if os.environ.get("ENCGRAPH_DEBUG"):
                raise
            terminated = isinstance(interrupt, Terminated)
            fail("terminated (SIGTERM)" if terminated else "interrupted", ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED)
        except Exception as error:  # noqa: BLE001 - anything else is a bug: one line, and how to report it
            if os.environ.get("ENCGRAPH_DEBUG"):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            fail(f"internal error ({type(error).__name__}: {first}); run again with ENCGRAPH_DEBUG=1 for the traceback "
                 "and report it", ExitCode.INTERNAL)

    return wrapper


def fail(message: str, code: ExitCode):
    err.print(f"[red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(int(code))


def make_folder(path, option: str) -> None:
    """Make an output folder (and its parents) if missing; one line if it cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot make that folder ({error.strerror or error})") from None


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


# Decoder-side options, named as vLLM names them; shared by `graphs`, `profile` and `plan`.
MaxNumSeqs = Annotated[int, typer.Option("--max-num-seqs", help="vLLM max_num_seqs.", rich_help_panel="vLLM decoder")]
MaxNumBatchedTokens = Annotated[
    int, typer.Option("--max-num-batched-tokens", help="vLLM max_num_batched_tokens.", rich_help_panel="vLLM decoder")
]
CudagraphMode = Annotated[
    str,
    typer.Option(
        "--cudagraph-mode",
        help="NONE, PIECEWISE, FULL, FULL_DECODE_ONLY or FULL_AND_PIECEWISE.",
        rich_help_panel="vLLM decoder",
    ),
]
CaptureSizes = Annotated[
    str | None,
    typer.Option("--cudagraph-capture-sizes", help="Explicit decoder capture sizes, e.g. 1,2,4,8.", rich_help_panel="vLLM decoder"),
]
MaxCaptureSize = Annotated[
    int | None,
    typer.Option("--max-cudagraph-capture-size", help="Largest decoder capture size.", rich_help_panel="vLLM decoder"),
]
SpecTokens = Annotated[
    int, typer.Option("--num-speculative-tokens", help="Speculative tokens per step.", rich_help_panel="vLLM decoder")
]
MaxLoras = Annotated[int, typer.Option("--max-loras", help="0 disables LoRA.", rich_help_panel="vLLM decoder")]
SpecializeLora = Annotated[
    bool,
    typer.Option(
        "--specialize-lora/--no-specialize-lora",
        help="Capture graphs with and without LoRA (vLLM cudagraph_specialize_lora).",
        rich_help_panel="vLLM decoder",
    ),
]
Blackwell = Annotated[
    bool, typer.Option("--blackwell", help="Use the Blackwell capture ceiling (1024, not 512).", rich_help_panel="vLLM decoder")
]


def decoder_settings(
    max_num_seqs, max_num_batched_tokens, cudagraph_mode, capture_sizes, max_capture_size, spec_tokens,
    max_loras, specialize_lora, blackwell,
):
    from ..graphcounts import DecoderSettings, validate
    from ..units import parse_int_list

    settings = DecoderSettings(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        cudagraph_mode=cudagraph_mode.upper(),
        cudagraph_capture_sizes=None if capture_sizes is None else parse_int_list(capture_sizes, "--cudagraph-capture-sizes"),
        max_cudagraph_capture_size=max_capture_size,
        num_speculative_tokens=spec_tokens,
        max_loras=max_loras,
        specialize_lora=specialize_lora,
        blackwell=blackwell,
    )
    validate(settings)
    return settings
