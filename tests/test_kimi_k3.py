"""Kimi-K3 (Moonshot's kimi_k3): its config read onto Kimi-K2.5's classes, the MoonViT3d tower and projector
written for it against the published checkpoint and vLLM 0.33.0's arithmetic, and the layout of
models/kimi_k3/nvidia/model.py (CPU; the last test on a GPU)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import ProfileRequest, Strategy, prepare
from encgraph_profiler.schema import Capture

PUBLISHED = Path(__file__).parent.parent / "configs" / "kimi-k3.json"  # moonshotai/Kimi-K3's config.json

# The published checkpoint's vision weights (its model-00096-of-000096.safetensors) and projector weights
# (model-00095), as a public model report lists every tensor of moonshotai/Kimi-K3; every block's are the same.
CHECKPOINT_VISION = {
    "vision_tower.patch_embed.proj.weight": (1024, 3, 14, 14),
    "vision_tower.patch_embed.pos_emb.weight": (64, 64, 1024),
    "vision_tower.encoder.final_layernorm.weight": (1024,),
    "mm_projector.proj.0.weight": (4096, 4096),
    "mm_projector.proj.2.weight": (7168, 4096),
    "mm_projector.post_norm.weight": (7168,),
}
CHECKPOINT_BLOCK = {
    "norm0.weight": (1024,),
    "norm1.weight": (1024,),
    "wqkv.weight": (4608, 1024),
    "wo.weight": (1024, 1536),
    "mlp.fc0.weight": (4096, 1024),
    "mlp.fc1.weight": (1024, 4096),
}


def _tiny(**vision_changes) -> dict:
    data = json.loads((Path(__file__).parent.parent / "configs" / "tiny" / "tiny-kimi-k3.json").read_text())
    data["vision_config"].update(vision_changes)
    return data


def _resolved(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return resolve(str(path))


def test_published_config_reads_as_kimi_k25_classes():
    spec = resolve("Kimi-K3")
    assert spec.adapter.family == "kimi-k3" and spec.source.resolve() == PUBLISHED.resolve()
    config = spec.adapter.tower_config(spec.config)
    vision = config.vision_config
    sizes = (vision.hidden_size, vision.intermediate_size, vision.num_attention_heads, vision.head_dim)
    assert sizes == (1024, 4096, 12, 128) and vision.num_hidden_layers == 27
    assert (vision.patch_size, vision.pos_emb_height, vision.pos_emb_width, vision.pos_emb_time) == (14, 64, 64, 4)
    assert (list(vision.merge_kernel_size), vision.hidden_act) == ([2, 2], "gelu_pytorch_tanh")
    assert vision.pos_emb_interpolation_mode == "bilinear"
    assert (config.text_config.model_type, config.text_config.hidden_size, config.image_token_id) == (
        "kimi_linear",
        7168,
        163605,
    )
    assert config.projection_layer_norm_eps == 1e-5


def test_tower_is_the_published_checkpoints_vision_weights():
    """Names and shapes as the checkpoint's, and its vision parameters: 401,214,464 in the tower and
    46,144,512 in the projector (the public weight list, summed by hand)."""
    spec = resolve("kimi-k3")
    config = spec.adapter.tower_config(spec.config)
    with torch.device("meta"):
        tower = spec.adapter.build_tower(config, "bfloat16", "sdpa")
    expected = dict(CHECKPOINT_VISION)
    for block in range(27):
        expected |= {f"vision_tower.encoder.blocks.{block}.{name}": shape for name, shape in CHECKPOINT_BLOCK.items()}
    assert {name: tuple(p.shape) for name, p in tower.named_parameters()} == expected
    assert sum(p.numel() for p in tower.vision_tower.parameters()) == 401_214_464
    assert sum(p.numel() for p in tower.mm_projector.parameters()) == 46_144_512
    assert model_facts(spec, "bfloat16").tower_parameters == 447_358_976


def test_whole_model_count_against_the_published_checkpoint():
    """The checkpoint stores 1,503,647,073,024 values: its experts' mxfp4 weights packed two to a byte
    (w1, w3 [3072, 1792] and w2 [3584, 1536] bytes) with a uint8 scale per 32, and A_log of 128 values a
    KDA layer, where vLLM keeps one per head (96). Counted unpacked, at --dtype, as encgraph counts."""
    facts = model_facts(resolve("kimi-k3"), "bfloat16")
    experts = 92 * 896  # every layer but the first (dense) holds 896 experts
    unpacked = experts * 3 * 3072 * 3584
    stored = experts * (2 * 3072 * 1792 + 3584 * 1536) + experts * (2 * 3072 * 112 + 3584 * 96)
    assert facts.total_parameters - unpacked + stored + 69 * (128 - 96) == 1_503_647_073_024
    assert facts.total_parameters == 2_779_931_834_976
    assert facts.kv_bytes_per_token == 24 * (512 + 64) * 2  # 24 MLA layers: one latent and one rotary key
    assert facts.max_position_embeddings == 1_048_576


def _vllm_grid(budget: int, items: int, kh: int = 2, kw: int = 2) -> tuple[int, int, int]:
    """models/kimi_k3/nvidia/model.py, prepare_encoder_cudagraph_capture_inputs, transcribed."""
    per = (budget + items - 1) // items
    max_w, max_h = 512 // kw, 512 // kh
    wo = min(math.ceil(math.sqrt(per)), max_w)
    ho = (per + wo - 1) // wo
    if ho > max_h:
        ho = max_h
        wo = (per + ho - 1) // ho
    assert wo <= max_w
    return (1, ho * kh, wo * kw)


LADDER = (64, 128, 256, 512, 1000, 1024, 2048, 4096, 8192)


@pytest.mark.parametrize("budgets", [LADDER, (1024, 2048, 4096, 8192), (1000,)])
def test_layouts_are_vllm_0_33s(budgets):
    """k as vLLM picks it (smallest budget 64: k = min(max // 64, smallest budget)), k items of the
    near-square grid; vLLM's longest sequence max(B * 4, one item's patches) and no spare sequence."""
    k = min(max(budgets) // 64, min(budgets))
    plain = prepare(ProfileRequest(model="kimi-k3", budgets=budgets, attn="sdpa"))
    vllm = prepare(
        ProfileRequest(model="kimi-k3", budgets=budgets, attn="sdpa", strategy=Strategy(capture=Capture.VLLM))
    )
    assert plain.settings.max_items == vllm.settings.max_items == k
    for ours, theirs in zip(plain.layouts, vllm.layouts, strict=True):
        grid = _vllm_grid(ours.budget, k)
        assert ours.grids == theirs.grids == (grid,) * k
        assert ours.tokens == k * grid[1] * grid[2] // 4 >= ours.budget and ours.input_patches == k * grid[1] * grid[2]
        assert (ours.max_seqlen, ours.spare_sequences) == (0, 0)
        assert (theirs.max_seqlen, theirs.spare_sequences) == (max(ours.budget * 4, grid[1] * grid[2]), 0)


def test_grids_beside_a_table_read_off_vllms_rule_by_hand():
    spec = resolve("kimi-k3")
    config = spec.adapter.tower_config(spec.config)
    table = {
        (8192, 128): ((1, 16, 16), 8192),  # 64 tokens an item: 8 x 8 windows
        (4096, 128): ((1, 12, 12), 4608),  # 32: ceil(sqrt(32)) = 6 a row, 6 rows
        (2048, 128): ((1, 8, 8), 2048),
        (1024, 128): ((1, 6, 6), 1152),  # 8: 3 x 3
        (64, 64): ((1, 2, 2), 64),
        (1000, 15): ((1, 16, 18), 1080),  # 67: 9 a row, 8 rows
        (300, 1): ((1, 34, 36), 306),  # 18 a row, 17 rows
        (65_026, 1): ((1, 510, 512), 65_280),  # 256 a row (the table's width), 255 rows
        (2**16, 1): ((1, 512, 512), 2**16),  # the whole RoPE table
    }
    for (budget, items), (grid, tokens) in table.items():
        layout = spec.adapter.layout(config, budget, items)
        assert (layout.grids, layout.tokens) == ((grid,) * items, tokens), (budget, items)
        vllm = spec.adapter.vllm_layout(layout, config, 0)
        assert vllm.max_seqlen == max(budget * 4, grid[1] * grid[2])  # (300, 1): one item of 1,224 patches
    assert spec.adapter.vllm_layout(spec.adapter.layout(config, 300, 1), config, 0).max_seqlen == 1224


def test_tall_windows_fill_the_tables_height_first(tmp_path):
    """With 4 x 2 windows the table holds 128 rows of 256: an item of 20,000 tokens is cut to 128
    rows of ceil(20000 / 128) = 157 windows (vLLM's second branch)."""
    spec = _resolved(tmp_path, _tiny(merge_kernel_size=[4, 2]))
    config = spec.adapter.tower_config(spec.config)
    assert _vllm_grid(20_000, 1, 4, 2) == (1, 512, 314)
    assert spec.adapter.layout(config, 20_000, 1).grids == ((1, 512, 314),)
    assert spec.adapter.layout(config, 20_000, 1).tokens == 128 * 157


def test_budget_past_the_rope_table_is_refused_with_vllms_reason():
    spec = resolve("tiny-kimi-k3")
    config = spec.adapter.tower_config(spec.config)
    with pytest.raises(UsageError, match=r"exceeds K3 RoPE capacity for max_batch_size=1; 65,536 tokens an item at"):
        spec.adapter.layout(config, 2**16 + 1, 1)
    with pytest.raises(UsageError, match="give --max-items 3 or more"):
        spec.adapter.layout(config, 2 * 2**16 + 1, 2)


def _vllm_reference(tower, pixel_values, grids):
    """vLLM 0.33.0's MoonViT3d and patchmergerv2 projector on their eager path (kimi_k25_vit.py), written
    apart from encgraph's: the patch Conv2d, the position table resampled per image, the complex
    2-D rotary table (Rope2DPosEmbRepeated), softmax attention image by image, tpool_patch_merger's
    view and permute, then the projector."""
    vision, projector = tower.vision_tower, tower.mm_projector
    heads, dim = vision.config.num_attention_heads, vision.config.head_dim
    flat = torch.arange(64 * 64).float()
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    x_cis, y_cis = (torch.polar(torch.ones(64 * 64, dim // 4), torch.outer(p, freqs)) for p in (flat % 64, flat // 64))
    table = torch.cat([x_cis[..., None], y_cis[..., None]], dim=-1).reshape(64, 64, -1)
    freqs_cis = torch.cat([table[:h, :w].reshape(-1, dim // 2) for _, h, w in grids])
    weight = vision.patch_embed.pos_emb.weight
    pos = [
        F.interpolate(weight.permute(2, 0, 1)[None], size=(h, w), mode="bilinear")[0].permute(1, 2, 0).flatten(0, 1)
        for _, h, w in grids
    ]
    x = F.conv2d(pixel_values, vision.patch_embed.proj.weight, stride=14).flatten(1) + torch.cat(pos)
    lengths = [h * w for _, h, w in grids]

    def rotary(t):
        return torch.view_as_real(torch.view_as_complex(t.float().reshape(*t.shape[:-1], -1, 2)) * freqs_cis[:, None])

    for block in vision.encoder.blocks:
        q, k, v = block.wqkv(block.norm0(x)).view(len(x), 3, heads, dim).unbind(1)
        q, k = rotary(q).flatten(-2), rotary(k).flatten(-2)
        out = []
        for qi, ki, vi in zip(q.split(lengths), k.split(lengths), v.split(lengths), strict=True):
            scores = torch.einsum("qhd,khd->hqk", qi, ki) * dim**-0.5
            out.append(torch.einsum("hqk,khd->qhd", scores.softmax(-1), vi).reshape(len(qi), -1))
        x = x + block.wo(torch.cat(out))
        x = x + block.mlp.fc1(F.gelu(block.mlp.fc0(block.norm1(x)), approximate="tanh"))
    x = vision.encoder.final_layernorm(x)
    merged = [
        seq.view(t, h // 2, 2, w // 2, 2, -1).mean(0).permute(0, 2, 1, 3, 4).reshape(h * w // 4, 4, -1)
        for seq, (t, h, w) in zip(x.split(lengths), grids, strict=True)
    ]
    hidden = torch.cat(merged).view(-1, 4 * x.shape[-1])
    return projector.post_norm(projector.proj[2](F.gelu(projector.proj[0](hidden))))


def test_captured_module_computes_what_vllms_tower_computes():
    """An image at the position table's own size (8 x 8 patches: no resampling) and one resampled;
    every weight random, the norms' too."""
    spec = resolve("tiny-kimi-k3")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    torch.manual_seed(0)
    tower = adapter.build_tower(config, "float32", "sdpa")
    for parameter in tower.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    grids = [(1, 8, 8), (1, 6, 10)]
    pixel_values = torch.randn(sum(h * w for _, h, w in grids), 3, 14, 14)
    with torch.inference_mode():
        ours = tower(pixel_values, torch.tensor(grids))
        theirs = _vllm_reference(tower, pixel_values, grids)
    assert ours.shape == (16 + 15, 64)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def _traced(adapter, tower, inputs, modules: dict) -> tuple[list, dict]:
    """encgraph's trace of the captured forward (meta tensors) and, for each module named, one (events
    so far, output storage) a call: where in the trace its output was made."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    from encgraph_profiler.trace import AllocationTrace, trace

    made = {name: [] for name in modules}

    def hook(name):
        def record(module, args, output):
            recorder = next(m for m in _get_current_dispatch_mode_stack() if isinstance(m, AllocationTrace))
            made[name].append((len(recorder.events), output.untyped_storage()._cdata))

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        with torch.inference_mode():
            events, _ = trace(lambda: adapter.forward(tower, inputs))
    finally:
        for handle in handles:
            handle.remove()
    return events, made


def _freed(events, made) -> int:
    """Where the output made at ``made`` (from ``_traced``) is freed."""
    start, key = made
    return next(i for i in range(start, len(events)) if events[i][:2] == ("free", key))


def test_blocks_free_what_vllms_encoder_layer_frees_where_it_frees_it():
    """vLLM's MoonViTEncoderLayer.forward: attention_qkvpacked keeps the fused qkv and its input (the
    first norm's output) until wo has run and drops both on return, before the MLP; MLP2 keeps its input
    (the second norm's output) until fc1 has run. A qkv kept through the MLP (the 302 MB qkv of 8,192
    tokens) made Kimi-K3's pool 448,790,528 bytes larger than vLLM's order gives."""
    spec = resolve("tiny-kimi-k3")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    with torch.device("meta"):
        tower = adapter.build_tower(config, "bfloat16", "varlen")
    layout = adapter.layout(config, 256, 4)
    inputs = adapter.make_inputs(tower, config, layout, "bfloat16", torch.device("meta"), torch.Generator())
    block = tower.vision_tower.encoder.blocks[0]
    parts = {"norm0": block.norm0, "qkv": block.wqkv, "wo": block.wo, "norm1": block.norm1}
    events, made = _traced(adapter, tower, inputs, parts | {"fc0": block.mlp.fc0, "fc1": block.mlp.fc1})
    (norm0,), (qkv,), (wo,), (norm1,), (fc0,), (fc1,) = made.values()
    assert wo[0] <= _freed(events, qkv) < norm1[0] and wo[0] <= _freed(events, norm0) < norm1[0]
    assert fc1[0] <= _freed(events, norm1) and _freed(events, wo) < norm1[0] and fc0[0] <= _freed(events, fc0)


@pytest.fixture
def kernel_calls(monkeypatch):
    """The CUDA varlen kernel replaced by attention over each packed sequence; what it was given, recorded."""
    from torch.nn.attention import varlen

    calls = []

    def reference(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, **_):
        calls.append((cu_q.tolist(), max_q))
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        parts = zip(*(t.split(lengths) for t in (q, k, v)), strict=True)
        out = [
            F.scaled_dot_product_attention(*(t.transpose(0, 1) for t in p), scale=scale).transpose(0, 1) for p in parts
        ]
        return torch.cat(out)

    monkeypatch.setattr(varlen, "varlen_attn", reference)
    return calls


def _run(attn, layout_of):
    spec = resolve("tiny-kimi-k3")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    torch.manual_seed(0)
    tower = adapter.build_tower(config, "float32", attn)
    layout = layout_of(adapter, config)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        return adapter.forward(tower, inputs)[0], inputs, layout


def test_varlen_takes_vllms_segments_and_longest_sequence(kernel_calls):
    """One kernel a block over the packed images, told of vLLM's longest sequence (B * 4 = 1,024
    patches, longer than any image here) with k + 1 offsets, no spare; the sdpa tower's outputs."""
    as_vllm = lambda adapter, config: adapter.vllm_layout(adapter.layout(config, 256, 4), config, 0)  # noqa: E731
    expected, _, _ = _run("sdpa", as_vllm)
    got, inputs, layout = _run("varlen", as_vllm)
    assert layout.grids == ((1, 16, 16),) * 4 and inputs["max_seqlen"] == layout.max_seqlen == 1024
    assert kernel_calls == [([0, 256, 512, 768, 1024], 1024)] * 2  # two blocks
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"norm_type": "layernorm"}, "vision_config norm_type 'layernorm' is not Kimi-K3's"),
        ({"mm_projector_type": "patchmerger"}, "mm_projector_type 'patchmerger' is not Kimi-K3's"),
        ({"attn_bias": True}, "attn_bias True is not Kimi-K3's"),
        ({"qkv_hidden_size": 50}, "qkv_hidden_size 50 does not split into vt_num_attention_heads 2"),
        ({"qkv_hidden_size": 36}, "a size its 2-D RoPE takes"),  # heads of 18
        ({"qkv_hidden_size": None}, "qkv_hidden_size None does not split"),
    ],
)
def test_structures_other_than_kimi_k3s_are_refused(tmp_path, change, message):
    with pytest.raises(UsageError, match=message):
        _resolved(tmp_path, _tiny(**change))


def test_other_text_models_and_video_layouts_are_refused(tmp_path):
    data = _tiny()
    data["text_config"]["model_type"] = "deepseek_v3"
    with pytest.raises(UsageError, match="a kimi_k3 text_config is KimiLinear's; got 'deepseek_v3'"):
        _resolved(tmp_path, data)
    video = ProfileRequest(
        model="tiny-kimi-k3", budgets=(256,), max_frames_per_batch=32, strategy=Strategy(capture=Capture.VLLM)
    )
    with pytest.raises(UsageError, match="no video layout for kimi-k3"):
        prepare(video)


@pytest.mark.gpu
@pytest.mark.parametrize("capture", ["plain", "vllm"])
def test_varlen_replay_equals_eager(capture):
    """PyTorch's varlen kernel captured over the packed images; with vLLM's capture inputs the kernel
    is told of the whole budget."""
    from helpers import measured, request

    report = measured(request("tiny-kimi-k3", (256, 512), attn="varlen", capture=capture))
    assert [b.replay_matches_eager for b in report.budgets] == [True] * 2, report.warnings
