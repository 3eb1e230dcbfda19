"""Write the documentation tables the code knows, from the code.

    python tools/write_docs.py            rewrite every target
    python tools/write_docs.py --check    exit 1, naming them, when a target differs from the code

A target is one function from a file's current text to its text as the code has it: a whole page
(docs/exit-codes.md), or a block between two markers of a page someone else writes (the README's
exit codes). A new generated page is one more function and one more entry in TARGETS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's package, installed or not

from encgraph_profiler.cli import COMMANDS  # noqa: E402 - after the path above
from encgraph_profiler.errors import ExitCode  # noqa: E402


@dataclass(frozen=True)
class Target:
    path: str  # relative to the repository root
    write: Callable[[str], str]  # the file's current text -> its text as the code has it


def _replace_block(text: str, name: str, block: str, path: str) -> str:
    """``text`` with what lies between ``<!-- NAME: ... -->`` and ``<!-- end NAME -->`` replaced by ``block``."""
    start, end = f"<!-- {name}:", f"<!-- end {name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no '{start} ... -->' and '{end}' markers to write the {name} between")
    head, rest = text.split(start, 1)
    marker, _ = rest.split("\n", 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}{marker}\n{block}{end}{tail}"


# -- exit codes -------------------------------------------------------------------------------------


def _returned_by(code: ExitCode) -> str:
    """The commands that return ``code``, each with what it means for that command."""
    commands = [(name, codes[code]) for name, (_, _, codes) in COMMANDS.items() if code in codes]
    if len(commands) == len(COMMANDS) and not any(note for _, note in commands):
        return "every command"
    return ", ".join(f"`{name}`" + (f" ({note})" if note else "") for name, note in commands)


def exit_codes_table() -> str:
    rows = [f"| {int(code)} | `{code.name}` | {code.description} | {_returned_by(code)} |" for code in ExitCode]
    return "\n".join(["| code | name | meaning | returned by |", "|---|---|---|---|", *rows]) + "\n"


def readme_exit_codes(text: str) -> str:
    return _replace_block(text, "exit-codes", exit_codes_table(), "README.md")


def exit_codes_page(text: str) -> str:
    return f"""<!-- generated from encgraph_profiler/errors.py and each command's EXIT_CODES by tools/write_docs.py; do not edit -->
# Exit codes

Exit codes are part of encgraph's interface: CI jobs branch on them. Each command's `--help` ends
with the codes it returns; this table lists them all.

{exit_codes_table()}
Errors are one line on stderr; set `ENCGRAPH_DEBUG=1` for the traceback instead.
"""


TARGETS: dict[str, Target] = {
    "README exit codes": Target("README.md", readme_exit_codes),
    "exit codes page": Target("docs/exit-codes.md", exit_codes_page),
}


def stale(root: Path = ROOT) -> list[str]:
    """The targets whose files differ from what the code generates."""
    found = []
    for name, target in TARGETS.items():
        path = root / target.path
        text = path.read_text() if path.is_file() else ""
        if target.write(text) != text:
            found.append(f"{name} ({target.path})")
    return found


def write(root: Path = ROOT) -> None:
    for target in TARGETS.values():
        path = root / target.path
        text = path.read_text() if path.is_file() else ""
        new = target.write(text)
        if new != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
            print(f"wrote {target.path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target differs from the code; write nothing")
    if parser.parse_args(argv).check:
        found = stale()
        for name in found:
            print(f"stale: {name}; run python tools/write_docs.py", file=sys.stderr)
        return 1 if found else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
