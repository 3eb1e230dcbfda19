"""Every case of the bad-input table (tests/test_bad_input.py) run through the installed command
line, each in its own process as a user runs it: its exit code against the table's, the number of
lines it printed, whether a traceback appeared, its wall time and its first line. Exit 1 when any
case differs from the table, printed a traceback or took more than one error line.

    python tools/bad_input_cli.py            # every case
    python tools/bad_input_cli.py check plan # only the cases of these commands
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_bad_input import CASES, ENV, _files  # noqa: E402


def main(commands: list[str]) -> int:
    recorded = json.loads(sorted((ROOT / "examples").glob("qwen2-vl-7b.*.json"))[0].read_text())
    bad = 0
    with tempfile.TemporaryDirectory() as folder:
        files = _files(Path(folder), recorded)
        for args, code, _ in CASES:
            words = [a for a in args if not ENV.match(a)]
            if commands and words[0] not in commands:
                continue
            env = {**os.environ, "COLUMNS": "200", **dict(a.split("=", 1) for a in args if ENV.match(a))}
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "encgraph_profiler", *(a.format(**files) for a in words)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            seconds = time.perf_counter() - started
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            errors = sum(line.startswith("error:") for line in lines)
            traceback = "Traceback" in done.stdout + done.stderr
            ok = done.returncode == code and not traceback and (code == 1 or errors == 1)
            bad += not ok
            shown = " ".join(a if len(a) < 40 else "…" + a[-30:] for a in args)
            first = (lines[0] if lines else "")[:160]
            verdict = "ok " if ok else "BAD"
            print(f"{verdict} exit {done.returncode} (table {code}) {len(lines)} line(s) {seconds:4.1f} s  {shown}")
            print(f"    {first}")
    print(f"{bad} case(s) differ" if bad else "every case as the table says")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
