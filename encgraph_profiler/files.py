"""Every file encgraph writes goes through here: atomically (an interrupted run never leaves a
truncated file), never over one of the same command's inputs, with a fallback path where a result
must not be lost. No torch, no terminal output: callers say what happened."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from .errors import UsageError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_writable(path: Path, option: str, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, a path that cannot be written or that is one of the command's
    ``inputs``: one line naming ``option``."""
    path = Path(path)
    for given in inputs:
        if _same_file(path, Path(given)):
            raise UsageError(f"{option} {path} is also an input of this command; write the output to another file")
    if path.is_dir():
        raise UsageError(f"{option} {path} cannot be written (it is a folder); give a writable file path")
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"{option} {path} cannot be written ({error.strerror or error}); give a writable file path"
        ) from None


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file beside it, renamed into place; a failed
    write leaves neither a partial file nor the temporary one. OSError propagates."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_or_fall_back(path: Path, content: str, stem: str) -> tuple[Path | None, str | None]:
    """Write ``content`` to ``path``; where that fails, to ``<stem>-<UTC time>.json`` in the working
    folder, else in the temporary folder. Returns (the path written or None when nothing could be,
    why ``path`` failed or None when it did not)."""
    try:
        write_atomic(path, content)
        return Path(path), None
    except OSError as error:
        reason = error.strerror or str(error)
    name = f"{stem}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            write_atomic(folder / name, content)
        except OSError:
            continue
        return folder / name, reason
    return None, reason
