"""Exit codes and the exceptions that carry them.

The CLI has one catch point (``encgraph_profiler.cli.output.handled``) that turns these into a
one-line message and the exit code below. Exit codes are part of the public interface: CI jobs
branch on them. Each code's words are here and nowhere else: every command's help, the README's
table and docs/exit-codes.md are generated from them (``python tools/write_docs.py``).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Each code with its ``summary`` (a few words, for help) and its ``description`` (for the docs)."""

    summary: str
    description: str

    def __new__(cls, value: int, summary: str, description: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.summary = summary
        member.description = description
        return member

    OK = 0, "ok", "success: everything asked was measured, predicted, gated, planned or written"
    REGRESSION = (
        1,
        "regression",
        (
            "a figure grew beyond tolerance, a figure shrank beyond tolerance with `--fail-on-improvement`, or "
            "(with `--allow-env-mismatch`) a budget of the baseline is missing; other budgets than the baseline's "
            "are other settings (5)"
        ),
    )
    USAGE = (
        2,
        "bad input",
        (
            "a bad option or value, unknown model, bad or incomplete model config, bad budgets, an unreadable "
            "`--vllm-log`, an output path that cannot be written or is one of the command's inputs, `--attn varlen` "
            "for a tower that does not pack sequences, `--max-frames-per-batch` without `--as vllm`"
        ),
    )
    ENVIRONMENT = (
        3,
        "environment",
        (
            "no CUDA device, an allocator setting that is not supported or modelled (`cudaMallocAsync`, "
            "`roundup_power2_divisions`), `--attn flash_attention_2` without flash-attn, `--attn varlen` with torch "
            "older than 2.9, a Hugging Face id that cannot be fetched (no network or no access) and is not cached"
        ),
    )
    CAPTURE = (
        4,
        "a budget not measured",
        (
            "a budget ran out of memory or failed to capture, or its replay differed from eager; every other "
            "budget is still in the report"
        ),
    )
    BAD_REPORT = (
        5,
        "bad report",
        (
            "a report is unreadable, truncated, malformed (the message names the field), contradicts itself (a "
            "pool row that is not what its budgets say), of another schema version, or from other settings or another "
            "environment; `check` of a measurement against a prediction"
        ),
    )
    DOES_NOT_FIT = 6, "does not fit", "no room for the KV cache, or less than one max-length request"
    NOT_GATEABLE = (
        7,
        "report not gateable",
        (
            "a report is incomplete, has no budgets, or its replay differed from eager: a gate never passes it "
            "(`--allow-incomplete` compares what was measured)"
        ),
    )
    NOT_WRITTEN = (
        8,
        "written elsewhere",
        ("the result could not be written where asked at the end; it went to the path the message names"),
    )
    INTERNAL = (
        70,
        "internal error",
        ("a bug in encgraph: the message says how to get the traceback; please report it (EX_SOFTWARE)"),
    )
    INTERRUPTED = 130, "SIGINT", "interrupted by SIGINT (Ctrl-C); what was measured is kept"
    TERMINATED = 143, "SIGTERM", "terminated by SIGTERM; what was measured is kept"


class EncgraphError(Exception):
    """An error a user can act on. ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(EncgraphError):
    exit_code = ExitCode.USAGE


class EnvironmentProblem(EncgraphError):
    exit_code = ExitCode.ENVIRONMENT


class CaptureFailure(EncgraphError):
    """A capture that failed for another reason than memory. The process may be unusable for
    further captures after it (a CUDA-level failure poisons the default RNG), so a ladder stops."""

    exit_code = ExitCode.CAPTURE


class DeviceOutOfMemory(EncgraphError):
    """The device could not hold one budget. ``requested_bytes`` is the allocation that failed,
    when the allocator said; the ladder goes on with the other budgets."""

    exit_code = ExitCode.CAPTURE

    def __init__(self, message: str, requested_bytes: int | None = None):
        super().__init__(message)
        self.requested_bytes = requested_bytes


class ReportError(EncgraphError):
    exit_code = ExitCode.BAD_REPORT


class NotGateable(EncgraphError):
    exit_code = ExitCode.NOT_GATEABLE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT would raise KeyboardInterrupt, so that both stop a ladder the
    same way and keep what was measured."""
