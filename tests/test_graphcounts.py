import pytest

from encgraph_profiler.errors import UsageError
from encgraph_profiler.graphcounts import DecoderSettings, capture_sizes, graph_counts


def line(**kwargs):
    budgets = kwargs.pop("budgets", None)
    return graph_counts(DecoderSettings(**kwargs), budgets).line.removeprefix("Profiling CUDA graph memory: ")


@pytest.mark.parametrize(
    "seqs, tokens, expected",
    [
        (256, 8192, "PIECEWISE=51 (largest=512), FULL=35 (largest=256)"),
        (128, 8192, "PIECEWISE=35 (largest=256), FULL=19 (largest=128)"),
        (1024, 8192, "PIECEWISE=51 (largest=512), FULL=51 (largest=512)"),
        (16, 2048, "PIECEWISE=7 (largest=32), FULL=5 (largest=16)"),
    ],
)
def test_vllm_worked_examples(seqs, tokens, expected):
    assert line(max_num_seqs=seqs, max_num_batched_tokens=tokens) == expected


def test_modes():
    assert line(cudagraph_mode="FULL_DECODE_ONLY") == "FULL=35 (largest=256)"
    assert line(cudagraph_mode="PIECEWISE") == "PIECEWISE=51 (largest=512)"
    assert line(cudagraph_mode="FULL") == "FULL=51 (largest=512)"
    assert line(cudagraph_mode="NONE") == "no CUDA graphs"
    assert line(budgets=(1024, 2048, 4096)).endswith(", ENCODER=3 (largest=4096)")
    assert line(cudagraph_mode="NONE", budgets=(4096,)) == "ENCODER=1 (largest=4096)"


def test_speculative_decoding_widens_and_shifts_full_graphs():
    # q = 3: max capture = min(256 * 3 * 2, 512, 8192) = 512; decode sizes 3 <= s <= 768.
    assert line(num_speculative_tokens=2) == "PIECEWISE=51 (largest=512), FULL=49 (largest=512)"
    # max_num_seqs 16, q = 2: max capture 64, sizes 1, 2, 4, 8 .. 64; FULL covers 2, 4, 8 .. 32.
    assert line(max_num_seqs=16, num_speculative_tokens=1) == "PIECEWISE=11 (largest=64), FULL=6 (largest=32)"


def test_lora_cases():
    assert line(max_loras=4) == "PIECEWISE=102 (largest=512), FULL=70 (largest=256)"
    assert line(max_loras=4, specialize_lora=False) == "PIECEWISE=51 (largest=512), FULL=35 (largest=256)"


def test_explicit_sizes_blackwell_and_batched_tokens():
    assert capture_sizes(DecoderSettings(cudagraph_capture_sizes=(8, 1, 4, 4))) == (1, 4, 8)
    assert capture_sizes(DecoderSettings(max_num_seqs=1024, blackwell=True))[-1] == 1024
    assert capture_sizes(DecoderSettings(max_num_batched_tokens=100))[-1] == 100
    assert capture_sizes(DecoderSettings(max_cudagraph_capture_size=64))[-1] == 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_num_seqs": 0}, "positive"),
        ({"max_num_batched_tokens": -1}, "positive"),
        ({"cudagraph_mode": "SOMETIMES"}, "unknown --cudagraph-mode"),
        ({"num_speculative_tokens": -1}, "negative"),
        ({"cudagraph_capture_sizes": (1, 9000)}, "larger than --max-num-batched-tokens"),
        ({"cudagraph_capture_sizes": (0,)}, "positive"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(UsageError, match=message):
        graph_counts(DecoderSettings(**kwargs), None)
