"""What every command shares: the consoles, the one catch point, and the decoder options."""

from __future__ import annotations

import functools
import os
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from ..errors import EncgraphError, ExitCode

out = Console(highlight=False)  # results: tables, or machine output with no markup
if not out.is_terminal:
    out.width = 160  # piped or captured: keep the wide tables readable instead of 80 columns
err = Console(stderr=True, highlight=False)  # progress, warnings, errors


class Format(str, Enum):
    table = "table"
    json = "json"


def handled(command):
    """Turn EncgraphError (and out-of-memory) into a one-line message and its exit code.
    ENCGRAPH_DEBUG=1 shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EncgraphError as error:
            if os.environ.get("ENCGRAPH_DEBUG"):
                raise
            err.print(f"[red]error:[/] {error}", markup=True, soft_wrap=True)
            raise typer.Exit(int(error.exit_code)) from None
        except Exception as error:  # noqa: BLE001 - only out-of-memory is mapped, the rest re-raised
            if type(error).__name__ != "OutOfMemoryError" or os.environ.get("ENCGRAPH_DEBUG"):
                raise
            err.print(f"[red]error:[/] out of memory: {str(error).splitlines()[0]}", soft_wrap=True)
            raise typer.Exit(int(ExitCode.CAPTURE)) from None

    return wrapper


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def parse_int_list(text: str | None, what: str) -> tuple[int, ...] | None:
    from ..errors import UsageError

    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r}: give comma-separated whole numbers") from None


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

    settings = DecoderSettings(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        cudagraph_mode=cudagraph_mode.upper(),
        cudagraph_capture_sizes=parse_int_list(capture_sizes, "--cudagraph-capture-sizes"),
        max_cudagraph_capture_size=max_capture_size,
        num_speculative_tokens=spec_tokens,
        max_loras=max_loras,
        specialize_lora=specialize_lora,
        blackwell=blackwell,
    )
    validate(settings)
    return settings
