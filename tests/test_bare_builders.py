"""tools/bare_ladder.py's builders, written from vLLM's code apart from encgraph's towers, traced on the
CPU: made on meta tensors and put through encgraph's allocator model, each bundled config's ladder
holds, graph by graph, the pools that `encgraph predict` gives. On a GPU the two are measured against
each other (tools/gpu_conformance.sh); here CI sees when a tower, a layout or a builder moves away from
the other, before any GPU time is spent."""

import json
import sys
from pathlib import Path

import pytest
import torch
import transformers

from encgraph_profiler.allocator_model import AllocatorSettings, CachingAllocator
from encgraph_profiler.models.registry import native_config, resolve
from encgraph_profiler.predict import predict, replay_events
from encgraph_profiler.request import ProfileRequest, prepare, resolve_attention
from encgraph_profiler.trace import trace

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (1024, 2048, 4096, 8192)
CAPABILITY = (9, 0)  # the H100 the builders were measured on: varlen where a tower packs sequences

# Every bundled config a builder reads (test_every_bundled_config_with_a_builder_is_here holds the list).
WITH_BUILDERS = (
    "deepseek-ocr",
    "deepseek-v4.1-flash",
    "deepseek-vl2",
    "gemma-3-27b",
    "gemma-4-31b",
    "gemma-4-e4b",
    "kimi-k2.5",
    "kimi-k3",
    "kimi-vl-a3b",
    "llama-4-scout-17b-16e",
    "minicpm-llama3-v-2-5",
    "minicpm-v-2-6",
    "minimax-m3",
    "qwen2-vl-2b",
    "qwen2-vl-7b",
)


@pytest.fixture(scope="module")
def bare():
    """tools/bare_families, as tools/bare_ladder.py uses it, building on meta tensors."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import bare_families
        from bare_families import common
    finally:
        sys.path.remove(str(ROOT / "tools"))
    common.DEVICE = "meta"
    yield bare_families
    common.DEVICE = "cuda"


@pytest.fixture(scope="module")
def builders(bare):
    """Each model type's builder."""
    return bare.builders()


def _config(name: str) -> dict:
    return json.loads((ROOT / "configs" / f"{name}.json").read_text())


def _lifetimes(events) -> list[tuple[str, int, int]]:
    """Allocation events with each block named by the order it was made in (a storage's key can be
    reused once it is freed): what the traces of two programs share when they make the same pool."""
    order, named, made = {}, [], 0
    for kind, key, size in events:
        if kind == "alloc":
            order[key], made = made, made + 1
        named.append((kind, order[key], size))
    return named


def _bare_pools(bare, data: dict, attn: str) -> list[int]:
    """The builder's ladder as tools/bare_ladder.py captures it (every run warmed up, then largest
    first into one pool, each graph's outputs kept), traced: the pool's bytes after each graph."""
    forward, runs, _ = bare.build_ladder(data, BUDGETS, attn)
    for run in runs:  # the warm-up (traced as the capture, untold), where builders make what they keep
        trace(lambda run=run: forward(**run))
    model, pools = CachingAllocator(settings=AllocatorSettings()), []
    for run in runs:
        events, _ = trace(lambda run=run: forward(**run))
        replay_events(model, events, "graph")
        pools.append(sum(pool.reserved_bytes for pool in model.pools.values()))
    return pools


def _assert_pools_predicted(bare, model: str, data: dict) -> None:
    """The builder's pools for ``data`` are those `encgraph predict --model MODEL` gives, graph by graph,
    with the kernel `--attn auto` picks on an H100."""
    attn = resolve_attention("auto", resolve(model).adapter, CAPABILITY)
    setup = prepare(ProfileRequest(model=model, budgets=BUDGETS, attn=attn), capability=CAPABILITY)
    predicted = [graph.pool_reserved_bytes for graph in predict(setup)]
    assert _bare_pools(bare, data, attn) == predicted, attn


def test_every_bundled_config_with_a_builder_is_here(builders):
    """DeepSeek-OCR 2's bundled config is DeepSeek's own form, which its builder refuses: it reads
    transformers' deepseek_ocr2 form (below)."""
    readable = {
        path.stem for path in (ROOT / "configs").glob("*.json") if _config(path.stem).get("model_type") in builders
    }
    assert readable == {*WITH_BUILDERS, "deepseek-ocr-2"}
    data = _config("deepseek-ocr-2")
    with pytest.raises(SystemExit, match="DeepSeek's own form"):
        builders[data.pop("model_type")](data, [1024], 16, torch.Generator())


@pytest.mark.parametrize("name", WITH_BUILDERS)
def test_builder_holds_the_predicted_pools_graph_by_graph(bare, name):
    _assert_pools_predicted(bare, name, _config(name))


def _step3p7() -> dict:
    """Step-3.7 at transformers' config defaults (47 blocks of 1536, 728 px; 15 graphs on two paths)."""
    return transformers.Step3p7Config().to_dict()


def _deepseek_ocr2() -> dict:
    """DeepSeek-OCR 2's bundled config as transformers saves it, in its deepseek_ocr2 form (13 graphs)."""
    native = native_config(_config("deepseek-ocr-2"), "deepseek-ocr-2")
    return transformers.DeepseekOcr2Config(**{k: v for k, v in native.items() if k != "model_type"}).to_dict()


def _stand_in(name: str) -> dict:
    """The family's tiny text config with its published model's vision sizes (tests/data/stand_ins)."""
    data = json.loads((ROOT / "configs" / "tiny" / f"tiny-{name}.json").read_text())
    return {
        **data,
        "vision_config": json.loads((ROOT / "tests" / "data" / "stand_ins" / f"{name}.vision.json").read_text()),
    }


UNBUNDLED = {
    "step-3.7": _step3p7,
    "deepseek-ocr-2": _deepseek_ocr2,
    "cohere-compass": lambda: _stand_in("cohere-compass"),
    "glm5-next": lambda: _stand_in("glm5-next"),
}


@pytest.mark.parametrize("name", UNBUNDLED)
def test_builder_holds_the_predicted_pools_of_unbundled_families(bare, tmp_path, name):
    """Families with no bundled config a builder reads: transformers' forms and stand-ins."""
    data = UNBUNDLED[name]()
    (tmp_path / "config.json").write_text(json.dumps(data))
    _assert_pools_predicted(bare, str(tmp_path), data)


def test_every_builder_is_traced(builders):
    """Each builder of tools/bare_families/ meets at least one config above (DeepSeek-OCR's is reached
    through DeepSeek-VL2's, whose model type its config shares)."""
    model_types = {_config(name)["model_type"] for name in WITH_BUILDERS} | {
        make()["model_type"] for make in UNBUNDLED.values()
    }
    traced = {build.__module__ for model_type, build in builders.items() if model_type in model_types}
    assert traced | {"bare_families.deepseek_ocr"} == {build.__module__ for build in builders.values()}
    assert "DeepseekOCRForCausalLM" in _config("deepseek-ocr")["architectures"]


@pytest.mark.parametrize("version", ["2.6", "2.5"])
def test_minicpmv_allocations_are_the_builders_one_by_one(builders, version):
    """MiniCPM-V's tower makes the same requests in the same order and frees each at the same point
    as the builder: which intermediates are alive at once decides the pool's small segments (2,097,152
    bytes apart on the GPU for MiniCPM-Llama3-V 2.5 when the two held the patch positions'
    intermediates over different spans)."""
    data = {**resolve("tiny-minicpmv").config, "version": version}
    budgets = (1024, 512)
    adapter = resolve("tiny-minicpmv").adapter
    config = adapter.tower_config(data)
    with torch.device("meta"):
        tower = adapter.build_tower(config, "bfloat16", "sdpa")
    layouts = [layout for budget in budgets for layout in adapter.graph_layouts(config, (budget,), 64)]
    forward, runs, _ = builders["minicpmv"](dict(data), list(budgets), 64, torch.Generator())
    assert len(runs) == len(layouts) == 8
    for layout, run in zip(layouts, runs, strict=True):
        inputs = adapter.make_inputs(tower, config, layout, "bfloat16", torch.device("meta"), torch.Generator())
        assert inputs["pixel_values"].shape == run["pixel_values"].shape
        ours, _ = trace(lambda inputs=inputs: adapter.forward(tower, inputs))
        theirs, _ = trace(lambda run=run: forward(**run))
        assert _lifetimes(ours) == _lifetimes(theirs), layout.label
