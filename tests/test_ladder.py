import pytest

from encgraph_profiler.errors import UsageError
from encgraph_profiler.ladder import (
    auto_ladder,
    auto_max_items,
    parse_budgets,
    resolve_budgets,
    resolve_max_items,
    tokens_per_item,
)


def test_parse_budgets_sorts():
    assert parse_budgets("4096, 1024,2048") == (1024, 2048, 4096)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "cannot read"),
        ("1024,,2048", "cannot read"),
        ("1k", "cannot read budgets"),
        ("0", "positive"),
        ("-64", "positive"),
        ("1024,1024", "given twice"),
    ],
)
def test_parse_budgets_rejects(text, message):
    with pytest.raises(UsageError, match=message):
        parse_budgets(text)


def test_auto_ladder_powers_of_two_and_max_appended():
    assert auto_ladder(1024) == (64, 128, 256, 512, 1024)
    assert auto_ladder(1500) == (64, 128, 256, 512, 1024, 1500)
    assert resolve_budgets(None, None)[-1] == 8192
    with pytest.raises(UsageError):
        auto_ladder(32)
    with pytest.raises(UsageError, match="not both"):
        resolve_budgets("64", 128)


def test_max_items_follows_vllm_rule():
    assert auto_max_items((1024, 2048, 4096, 8192)) == 128
    assert auto_max_items((64, 128)) == 2
    assert auto_max_items((16, 8192)) == 16  # capped by the smallest budget
    assert resolve_max_items((1024,), 8) == 8
    with pytest.raises(UsageError, match="larger than the smallest budget"):
        resolve_max_items((64, 128), 65)
    with pytest.raises(UsageError):
        resolve_max_items((64,), 0)


def test_tokens_per_item_rounds_up():
    assert tokens_per_item(1000, 3) == 334
    assert tokens_per_item(4096, 64) == 64
