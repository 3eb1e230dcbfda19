"""Exit codes are written once, in errors.py: every command's help and the docs are generated from
them, and the docs fail this test when they fall behind the code."""

import importlib.util
import sys
from pathlib import Path

from typer.testing import CliRunner

from encgraph_profiler.cli import build_app, commands
from encgraph_profiler.cli.options import exit_code_sentence
from encgraph_profiler.errors import ExitCode

app = build_app()

ROOT = Path(__file__).resolve().parent.parent


def _write_docs():
    spec = importlib.util.spec_from_file_location("write_docs", ROOT / "tools" / "write_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_up_to_date():
    assert _write_docs().stale() == [], "run python tools/write_docs.py"


def test_a_changed_description_makes_the_docs_stale(monkeypatch, tmp_path):
    tool = _write_docs()
    for target in tool.TARGETS.values():
        (tmp_path / target.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / target.path).write_text((ROOT / target.path).read_text())
    assert tool.stale(tmp_path) == []
    monkeypatch.setattr(ExitCode.DOES_NOT_FIT, "description", "no room at all")
    assert tool.stale(tmp_path) == ["README exit codes (README.md)", "exit codes page (docs/exit-codes.md)"]
    tool.write(tmp_path)
    assert (
        tool.stale(tmp_path) == []
        and "| 6 | `DOES_NOT_FIT` | no room at all | `plan` |" in (tmp_path / "README.md").read_text()
    )


def test_each_commands_help_ends_with_its_exit_codes():
    for name, (_, _, codes) in commands().items():
        if name == "models":  # its epilog is its own module's
            continue
        help_text = " ".join(CliRunner().invoke(app, [name, "--help"], terminal_width=200).output.split())
        assert " ".join(exit_code_sentence(codes).split()) in help_text, name
    profile = " ".join(exit_code_sentence(commands()["profile"][2]).split())
    assert profile == (
        "Exit codes: 0 ok, 1 regression (against --baseline), 2 bad input, 3 environment, 4 a budget not "
        "measured, 5 bad report (--baseline), 7 report not gateable (--baseline), 8 written elsewhere (--json), "
        "70 internal error, 130 SIGINT, 143 SIGTERM."
    )
    top = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=200).output.split())
    assert "6 does not fit" in top and "143 SIGTERM" in top


def test_every_code_has_words_and_a_command():
    for code in ExitCode:
        assert code.summary and code.description, code.name
        assert any(code in codes for _, _, codes in commands().values()), code.name


def test_help_prose_is_wrapped_once_by_the_terminal():
    """Prose in an epilog is one line a paragraph: at 200 columns, a sentence that the source wraps
    reads on one line, and no line of it ends early; examples keep their own lines."""
    output = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output
    assert "what it allocates and frees goes through a model of PyTorch's CUDA caching allocator" in output
    assert "\n   encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192" in output
