"""The code keeps the shape a reader can carry: no function over 60 lines, no module over 400."""

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "code_shape.py"


def test_no_function_over_60_lines_and_no_module_over_400(capsys):
    spec = importlib.util.spec_from_file_location("code_shape", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0, capsys.readouterr().out
