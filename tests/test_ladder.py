import pytest

from encgraph_profiler.errors import UsageError
from encgraph_profiler.ladder import (
    AutoLadder,
    auto_max_items,
    parse_budgets,
    resolve_budgets,
    resolve_max_items,
    tokens_per_item,
)
from encgraph_profiler.request import ProfileRequest, prepare


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


def test_auto_ladder_doubles_from_the_models_smallest_budget_and_appends_the_max():
    assert AutoLadder(1024).budgets(64) == (64, 128, 256, 512, 1024)
    assert AutoLadder(1500).budgets(64) == (64, 128, 256, 512, 1024, 1500)
    assert AutoLadder(2048).budgets(421) == (421, 842, 1684, 2048)  # DeepSeek-VL2's smallest budget
    assert resolve_budgets(None, None) == AutoLadder(8192)
    with pytest.raises(UsageError, match="below deepseek-vl2's smallest encoder budget \\(421\\)"):
        AutoLadder(300).budgets(421, "deepseek-vl2")
    with pytest.raises(UsageError, match="must be from 1 to"):
        resolve_budgets(None, 0)
    with pytest.raises(UsageError, match="not both"):
        resolve_budgets("64", 128)


@pytest.mark.parametrize(
    "model, smallest",
    [("qwen2-vl-7b", 64), ("kimi-k2.5", 64), ("gemma-4-31b", 70), ("deepseek-vl2", 421), ("minicpm-v-2-6", 64)],
)
def test_the_automatic_ladder_of_a_model_starts_at_its_smallest_budget(model, smallest):
    """vLLM's _generate_budgets(min_budget, max_budget), min_budget from the model's budget range."""
    setup = prepare(ProfileRequest(model, AutoLadder(2048)), capability=(9, 0))
    assert setup.settings.budgets[0] == smallest == setup.adapter.min_budget(setup.tower_config)
    assert setup.settings.budgets == AutoLadder(2048).budgets(smallest)


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
