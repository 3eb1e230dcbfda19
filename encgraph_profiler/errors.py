"""Exit codes and the exceptions that carry them.

The CLI has one catch point (``encgraph_profiler.cli.common.handled``) that turns these into a
one-line message and the exit code below. Exit codes are part of the public interface: the README
lists them and CI jobs branch on them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REGRESSION = 1  # check: a figure grew beyond tolerance
    USAGE = 2  # bad option, value, config or model name
    ENVIRONMENT = 3  # no CUDA device, unsupported allocator backend, missing attention library
    CAPTURE = 4  # a budget ran out of memory or failed to capture; the rest is still reported
    BAD_REPORT = 5  # report unreadable, truncated, malformed, wrong schema version, fingerprint mismatch
    DOES_NOT_FIT = 6  # plan: no room for the KV cache or for one max-length request
    NOT_GATEABLE = 7  # check: a report is incomplete, empty or its replay differed from eager
    NOT_WRITTEN = 8  # profile: the report could not be written where asked; it went to a fallback path
    INTERNAL = 70  # a bug in encgraph: the message asks for a report (EX_SOFTWARE)
    INTERRUPTED = 130  # SIGINT (Ctrl-C); what was measured is kept
    TERMINATED = 143  # SIGTERM; what was measured is kept


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
