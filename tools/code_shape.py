"""The longest functions and modules of encgraph_profiler/, against the limits the code keeps
(60 lines a function, 400 a module); exit 1 when one is over.

    python tools/code_shape.py
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "encgraph_profiler"
FUNCTION_LINES, MODULE_LINES = 60, 400


def main() -> int:
    functions, modules = [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(ROOT.parent)
        modules.append((len(text.splitlines()), str(name)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                functions.append((node.end_lineno - start + 1, f"{name}:{node.lineno} {node.name}"))
    for kind, rows, limit in (("function", functions, FUNCTION_LINES), ("module", modules, MODULE_LINES)):
        rows.sort(reverse=True)
        print(f"longest {kind}s (limit {limit} lines):")
        for lines, where in rows[:3]:
            print(f"  {lines:4d}  {where}")
    over = [r for r in functions if r[0] > FUNCTION_LINES] + [r for r in modules if r[0] > MODULE_LINES]
    for lines, where in over:
        print(f"over: {where} ({lines} lines)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
