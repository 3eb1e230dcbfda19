"""The inputs encgraph captures for each budget of vLLM's ladder, as a Markdown table, beside the rule the
family follows (its module's docstring): what to compare line by line with vLLM's own functions.

    python tools/show_layouts.py gemma-4-31b                      # the family's smallest budget to 8192
    python tools/show_layouts.py kimi-k2.5 --up-to 4096 --as vllm

The ladder is vLLM's: from the family's smallest budget, doubling, up to the largest, plus the largest.
"""

from __future__ import annotations

import argparse
import inspect
import itertools

from encgraph_profiler.ladder import doubling_ladder
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import ProfileRequest, parse_strategy, prepare


def grids_text(grids: tuple[tuple[int, int, int], ...]) -> str:
    """Runs of equal grids: "64 x [1, 2, 64]"."""
    return ", ".join(f"{len(list(run))} x {list(grid)}" for grid, run in itertools.groupby(grids))


def table(model: str, largest: int, strategy: str | None) -> str:
    spec = resolve(model)
    smallest = spec.adapter.min_budget(spec.adapter.tower_config(spec.config))
    budgets = doubling_ladder(smallest, largest)
    setup = prepare(ProfileRequest(model=model, budgets=budgets, strategy=parse_strategy(strategy, None, None, None)))
    items = setup.settings.max_items
    lines = [
        f"## {model} ({setup.adapter.family}): budgets {smallest} to {largest}, {items} items at most",
        "",
        inspect.getdoc(inspect.getmodule(type(setup.adapter))) or "",
        "",
        "| graph | budget | items | tokens | patches | grids [t, h, w] | longest sequence |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for layout in setup.capture_order():
        longest = f"{layout.max_seqlen:,}" if layout.max_seqlen else "the longest item"
        path = layout.path or "-"
        lines.append(
            f"| {path} | {layout.budget:,} | {layout.items} | {layout.tokens:,} | {layout.input_patches:,} "
            f"| {grids_text(layout.grids) or layout.meaning} | {longest} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="bundled names, config files or folders")
    parser.add_argument("--up-to", type=int, default=8192, help="the largest budget (default 8192)")
    parser.add_argument("--as", dest="strategy", default=None, help="a strategy, as `encgraph profile --as` takes")
    args = parser.parse_args()
    print("\n\n".join(table(model, args.up_to, args.strategy) for model in args.models))


if __name__ == "__main__":
    main()
