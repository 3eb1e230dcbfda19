"""Exit codes and the exceptions that carry them.

The CLI has one catch point (``encgraph_profiler.cli.run``) that turns these into a one-line
message and the exit code below. Exit codes are part of the public interface: the README lists
them and CI jobs branch on them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REGRESSION = 1  # check: a figure grew beyond tolerance
    USAGE = 2  # bad option, value or model name
    ENVIRONMENT = 3  # no CUDA device, unsupported allocator backend
    CAPTURE = 4  # capture failed, replay mismatch could not be measured, out of memory
    BAD_REPORT = 5  # report unreadable, truncated, wrong schema version, fingerprint mismatch
    DOES_NOT_FIT = 6  # plan: no room for the KV cache or for one max-length request


class EncgraphError(Exception):
    """An error a user can act on. ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(EncgraphError):
    exit_code = ExitCode.USAGE


class EnvironmentProblem(EncgraphError):
    exit_code = ExitCode.ENVIRONMENT


class CaptureFailure(EncgraphError):
    exit_code = ExitCode.CAPTURE
    partial = None  # the report of the budgets measured before the failure, when there were any


class ReportError(EncgraphError):
    exit_code = ExitCode.BAD_REPORT
