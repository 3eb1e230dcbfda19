"""Encoder token budgets, as vLLM counts and captures them. Pure logic, no torch.

A budget counts vision tokens after spatial merge: an image with a patch grid [t, h, w] and merge
size m costs t * (h / m) * (w / m) tokens. vLLM captures one encoder graph per budget; each graph
is captured with ``items`` images laid out as k images of grid [1, m, ceil(B / k) * m].
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .errors import UsageError
from .units import parse_int_list

DEFAULT_MAX_BUDGET = 8192
QWEN_SMALLEST_BUDGET = 64  # the Qwen-style families' smallest budget, and the default where no model is given
# 2^24 tokens: about 64 million ViT patches at merge size 2, tens of GiB of pixels alone. Larger
# values are typing slips, and would overflow the int32 segment offsets the towers use.
MAX_BUDGET = 2**24


def parse_budgets(text: str) -> tuple[int, ...]:
    """Parse "1024,2048,4096" into sorted budgets, rejecting malformed, non-positive, absurdly large
    or repeated ones."""
    budgets = parse_int_list(text, "budgets")
    for value in budgets:
        if value <= 0:
            raise UsageError(f"budget {value} must be a positive number of tokens")
        if value > MAX_BUDGET:
            raise UsageError(
                f"budget {value:,} is above {MAX_BUDGET:,} tokens, far beyond what one encoder batch can hold; "
                "give budgets such as 1024,2048,4096"
            )
    duplicates = sorted(b for b, n in Counter(budgets).items() if n > 1)
    if duplicates:
        raise UsageError(f"budget {duplicates[0]} is given twice; list each budget once")
    return tuple(sorted(budgets))


def doubling_ladder(smallest: int, largest: int) -> tuple[int, ...]:
    """vLLM's generated budgets: smallest, doubling while at most largest, then largest itself."""
    ladder = []
    budget = smallest
    while budget <= largest:
        ladder.append(budget)
        budget *= 2
    if not ladder or ladder[-1] != largest:
        ladder.append(largest)
    return tuple(ladder)


@dataclass(frozen=True)
class AutoLadder:
    """vLLM's automatic ladder up to ``largest`` (``--max-budget``): it starts at the model's own
    smallest budget (get_encoder_cudagraph_budget_range), known once the model is, and doubles."""

    largest: int

    def budgets(self, smallest: int, model: str = "the model") -> tuple[int, ...]:
        if self.largest < smallest:
            raise UsageError(
                f"--max-budget {self.largest:,} is below {model}'s smallest encoder budget ({smallest:,}); "
                f"give {smallest:,} or more"
            )
        return doubling_ladder(smallest, self.largest)


def resolve_budgets(budgets: str | None, max_budget: int | None) -> tuple[int, ...] | AutoLadder:
    """Explicit budgets win; otherwise vLLM's automatic ladder up to max_budget (default 8192)."""
    if budgets is not None:
        if max_budget is not None:
            raise UsageError("give either --budgets or --max-budget, not both")
        return parse_budgets(budgets)
    largest = DEFAULT_MAX_BUDGET if max_budget is None else max_budget
    if not 1 <= largest <= MAX_BUDGET:
        raise UsageError(f"--max-budget {largest:,} must be from 1 to {MAX_BUDGET:,} tokens; give one such as 8192")
    return AutoLadder(largest)


def auto_max_items(budgets: tuple[int, ...], min_budget: int = QWEN_SMALLEST_BUDGET) -> int:
    """vLLM's default images per captured batch: min(max_budget // min_budget, smallest budget), at
    least 1, min_budget being the family's smallest encoder budget (64 for Qwen-style grids)."""
    return max(1, min(max(budgets) // min_budget, min(budgets)))


def resolve_max_items(budgets: tuple[int, ...], max_items: int | None, min_budget: int = QWEN_SMALLEST_BUDGET) -> int:
    if max_items is None:
        return auto_max_items(budgets, min_budget)
    if max_items <= 0:
        raise UsageError(f"--max-items {max_items} must be at least 1")
    if max_items > min(budgets):
        raise UsageError(
            f"--max-items {max_items} is larger than the smallest budget ({min(budgets)}): "
            "each image needs at least one token; lower --max-items or drop the small budget"
        )
    return max_items


def tokens_per_item(budget: int, items: int) -> int:
    """Tokens each of ``items`` images gets so that together they cover the budget."""
    return -(-budget // items)
