"""MiniCPM-V 2.5 / 2.6 / 4.0 and MiniCPM-o 2.6 (CPU): the tower encgraph builds against the published
checkpoints' parameters, vLLM 0.33.0's layouts and capture axes with numbers, and the batched graph
against each slice computed alone. transformers has no MiniCPM-V model to compare with."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.families.minicpmv import patch_grids
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.models.towers.minicpmv import position_table
from encgraph_profiler.request import ProfileRequest, parse_strategy, prepare

# SigLIP-400M as MiniCPM-V's vpm (27 layers, 1152 wide, 4900 positions): 417,792,240 parameters, what
# princepride/MiniCPM-V-2_6-VPM (the vpm of openbmb/MiniCPM-V-2_6 saved alone) publishes, 836 MB of bf16
# weights (418 M parameters).
VPM = 417_792_240


def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    spec = resolve(name)
    with torch.device("meta"):
        tower = spec.adapter.build_tower(spec.adapter.tower_config(spec.config), "bfloat16", "sdpa")
    return {key: tuple(p.shape) for key, p in tower.named_parameters()}


@pytest.mark.parametrize(
    "name, width, queries, resampler, total",
    [
        # 8.10 B with Qwen2-7B: OpenBMB's "8B"; bf16 copies of openbmb/MiniCPM-V-2_6 (jonsena/SASMinicpm,
        # singhshiva/bf16cpm) hold 4.87 + 4.93 + 4.33 + 2.06 = 16.19 GB of shards
        ("minicpm-v-2-6", 3584, 64, 68_619_264, 8_099_175_152),
        # 8.54 B with Llama-3-8B: the seven fp16 shards of openbmb/MiniCPM-Llama3-V-2_5 hold 17.08 GB
        ("minicpm-llama3-v-2-5", 4096, 96, 89_038_848, 8_537_092_336),
    ],
)
def test_tower_is_the_checkpoints_vpm_and_resampler(name, width, queries, resampler, total):
    shapes = _shapes(name)
    assert sum(np.prod(s) for k, s in shapes.items() if k.startswith("vpm.")) == VPM
    assert sum(np.prod(s) for k, s in shapes.items() if k.startswith("resampler.")) == resampler
    assert {k for k in shapes if k.startswith("resampler.")} == {
        "resampler.query",
        "resampler.proj",
        "resampler.kv_proj.weight",
        "resampler.attn.in_proj_weight",
        "resampler.attn.in_proj_bias",
        "resampler.attn.out_proj.weight",
        "resampler.attn.out_proj.bias",
        *(f"resampler.{norm}.{part}" for norm in ("ln_q", "ln_kv", "ln_post") for part in ("weight", "bias")),
    }
    assert shapes["resampler.query"] == (queries, width)
    assert shapes["resampler.kv_proj.weight"] == (width, 1152)
    assert shapes["resampler.attn.in_proj_weight"] == (3 * width, width)
    assert shapes["vpm.embeddings.patch_embedding.weight"] == (1152, 3, 14, 14)
    assert shapes["vpm.embeddings.position_embedding.weight"] == (4900, 1152)
    assert shapes["vpm.encoder.layers.26.self_attn.q_proj.weight"] == (1152, 1152)
    assert shapes["vpm.encoder.layers.26.mlp.fc1.weight"] == (4304, 1152)
    assert "vpm.encoder.layers.27.mlp.fc1.weight" not in shapes and "vpm.post_layernorm.weight" in shapes
    facts = model_facts(resolve(name), "bfloat16")
    assert (facts.tower_parameters, facts.total_parameters) == (VPM + resampler, total)


def test_position_table_is_vllms_2d_sincos():
    """get_2d_sincos_pos_embed(width, (70, 70), version=(2, 5)) as resampler.py builds it, in numpy."""

    def axis(width, positions):
        omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float32) / (width / 2.0))
        angles = np.einsum("hw,d->hwd", positions, omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)

    columns, rows = np.meshgrid(np.arange(70, dtype=np.float32), np.arange(70, dtype=np.float32))
    expected = np.concatenate([axis(32, columns), axis(32, rows)], axis=-1)
    np.testing.assert_allclose(position_table(64, 70).numpy(), expected, atol=1e-6)


def _layouts(model, budgets, **request):
    setup = prepare(ProfileRequest(model=model, budgets=budgets, attn="sdpa", **request))
    return setup, [(g.path, g.budget, g.items, g.tokens, g.input_patches) for g in setup.capture_order()]


def test_graphs_are_vllms_one_per_budget_and_patch_grid():
    """MiniCPM-V 2.6 (query_num 64, 980 px / 14 px: a 70 x 70 grid): k = min(8192 // 64, 1024) = 128;
    S = max(1, min(B // 64, 128 * 10)) slices per graph, budget after budget, the grids in vLLM's order."""
    setup, graphs = _layouts("minicpm-v-2-6", (1024, 8192))
    assert setup.settings.max_items == 128
    patches = {"grid 32x32": 1024, "grid 32x64": 2048, "grid 64x32": 2048, "grid 70x70": 4900}
    assert graphs == [
        (path, budget, budget // 64, budget, budget // 64 * per)
        for budget in (8192, 1024)
        for path, per in patches.items()
    ]
    meaning = [g.meaning for g in setup.layouts if g.path == "grid 32x64" and g.budget == 1024]
    assert meaning == ["1,024 tokens = 16 slices of 448x896 px, 32,768 ViT patches resampled to 64 tokens each"]


def test_slices_are_capped_at_k_slices_of_an_image_and_at_least_one():
    """MiniCPM-V 2.5 (query_num 96): with k = 2, at most 2 * (9 + 1) = 20 slices; below one slice, one."""
    _, graphs = _layouts("minicpm-llama3-v-2-5", (50, 960, 4096), max_items=2)
    assert {(budget, items) for _, budget, items, _, _ in graphs} == {(4096, 20), (960, 10), (50, 1)}
    assert {tokens for _, budget, _, tokens, _ in graphs if budget == 50} == {96}


def test_frames_raise_the_cap_for_2_6_and_are_refused_for_2_5():
    """_mcpmv_max_slices_cap: with F frames per batch, 2.6 and 4.0 allow max(k, F) * 10 slices; 2.5's
    capture is of images only (get_encoder_cudagraph_config: video from 2.6 on)."""
    vllm = parse_strategy("vllm")
    _, six = _layouts("minicpm-v-2-6", (64, 8192), max_items=2, strategy=vllm, max_frames_per_batch=8)
    assert {(b, n) for _, b, n, _, _ in six} == {(8192, 80), (64, 1)}
    with pytest.raises(UsageError, match=r"no video layout for MiniCPM-V 2\.5"):
        _layouts("minicpm-llama3-v-2-5", (96, 8192), max_items=2, strategy=vllm, max_frames_per_batch=8)


@pytest.mark.parametrize(
    "image_size, grids",
    [
        (448, ((32, 32),)),
        (560, ((32, 32), (40, 40))),
        (896, ((32, 32), (32, 64), (64, 32), (64, 64))),
        (980, ((32, 32), (32, 64), (64, 32), (70, 70))),
    ],
)
def test_patch_grids_are_the_base_grids_that_fit_then_the_full_one(tmp_path, image_size, grids):
    data = json.loads(resolve("minicpm-v-2-6").source.read_text())
    data["vision_config"]["image_size"] = image_size
    (tmp_path / "config.json").write_text(json.dumps(data))
    spec = resolve(str(tmp_path))
    assert patch_grids(spec.adapter.tower_config(spec.config)) == grids


def _published(tmp_path, change):
    data = json.loads(resolve("minicpm-v-2-6").source.read_text())
    change(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    return resolve(str(tmp_path))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(version=4.5), "MiniCPM-V 4.5: vLLM serves it without encoder CUDA graphs"),
        (lambda d: (d.pop("version"), d.update(hidden_size=2304)), "MiniCPM-V 2.0"),
        (lambda d: d.update(version="3.1"), "vLLM serves versions 2.0, 2.5, 2.6, 4.0 and 4.5"),
        (lambda d: d.update(model_type="minicpmo", version=4.5), "MiniCPM-o 4.5: vLLM captures encoder graphs"),
        (lambda d: d.update(hidden_size=100), "hidden_size is 100"),
        (lambda d: d["vision_config"].pop("intermediate_size"), "lacks intermediate_size"),
    ],
)
def test_versions_and_sizes_vllm_does_not_capture_are_refused(tmp_path, change, message):
    with pytest.raises(UsageError, match=message):
        _published(tmp_path, change)


@pytest.mark.parametrize(
    "name, bundled",
    [
        ("MiniCPM-V-2_6", "minicpm-v-2-6"),
        ("MiniCPM-V-2.6", "minicpm-v-2-6"),
        ("MiniCPM-Llama3-V-2_5", "minicpm-llama3-v-2-5"),
    ],
)
def test_names_of_the_bundled_configs(name, bundled):
    assert resolve(name).name == bundled


@pytest.mark.parametrize(
    "name, repo_id", [("MiniCPM-V-4", "openbmb/MiniCPM-V-4"), ("MiniCPM-o-2_6", "openbmb/MiniCPM-o-2_6")]
)
def test_names_read_by_id_point_to_the_id(name, repo_id):
    with pytest.raises(UsageError, match=f"no bundled config: give its Hugging Face id \\({repo_id}\\)"):
        resolve(name)


def test_versions_as_vllm_reads_them(tmp_path):
    assert resolve("minicpm-llama3-v-2-5").adapter.tower_config(resolve("minicpm-llama3-v-2-5").config).version == (
        2,
        5,
    )
    four = _published(tmp_path, lambda d: d.update(version="4.0"))
    assert four.adapter.tower_config(four.config).version == (4, 0)
    audio = {"d_model": 64, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 128}
    omni = _published(tmp_path, lambda d: (d.pop("version"), d.update(model_type="minicpmo", audio_config=audio)))
    config = omni.adapter.tower_config(omni.config)
    assert config.version == (2, 6) and config.audio_config.encoder_ffn_dim == 128
    facts = model_facts(omni, "bfloat16")
    assert facts.tower_parameters == VPM + 68_619_264
    assert facts.total_parameters > 8_099_175_152  # with the Whisper encoder and its projector


def _tiny(version="2.6"):
    spec = resolve("tiny-minicpmv")
    config = spec.adapter.tower_config({**spec.config, "version": version})
    torch.manual_seed(0)
    return spec.adapter, config, spec.adapter.build_tower(config, "float32", "sdpa")


@pytest.mark.parametrize("version", ["2.6", "2.5"])
def test_graph_equals_vllms_eager_layout_of_each_slice_as_one_row_of_patches(version):
    adapter, config, tower = _tiny(version)
    for layout in adapter.graph_layouts(config, (40,), 4):
        inputs = adapter.make_inputs(tower, config, layout, "float32", torch.device("cpu"), torch.Generator())
        with torch.inference_mode():
            assert torch.equal(adapter.forward(tower, inputs)[0], adapter.reference_forward(tower, inputs)[0])


def _bucket(fraction, side=70):
    """The patch-position bucket vLLM's ViT takes: bucketize against arange(1/side, 1, 1/side)."""
    return torch.bucketize(fraction, torch.arange(1 / side, 1.0, 1 / side), right=True)


def _slice_alone(tower, patches, rows, cols, grid_from_mask):
    """One slice through the ViT and the resampler with no padding, the attention written out."""
    vpm, resampler, p = tower.vpm, tower.resampler, patches.shape[-1]
    image = patches.view(rows, cols, 3, p, p).permute(2, 0, 3, 1, 4).reshape(1, 3, rows * p, cols * p)
    index = torch.arange(rows * cols)
    if grid_from_mask:  # MiniCPM-V 2.5: one row of rows * cols patches
        position = _bucket(index / (rows * cols))
    else:
        position = _bucket(index // cols / rows) * 70 + _bucket(index % cols / cols)
    hidden = vpm.embeddings.patch_embedding(image).flatten(2).transpose(1, 2) + vpm.embeddings.position_embedding(
        position
    )
    hidden = vpm.post_layernorm(vpm.encoder(inputs_embeds=hidden).last_hidden_state)[0]
    keys = resampler.ln_kv(resampler.kv_proj(hidden))
    table = position_table(keys.shape[-1], 70)[index // cols, index % cols]
    width, heads = keys.shape[-1], resampler.attn.num_heads
    wq, wk, wv = resampler.attn.in_proj_weight.chunk(3)
    bq, bk, bv = resampler.attn.in_proj_bias.chunk(3)
    q = (resampler.ln_q(resampler.query) @ wq.T + bq).view(-1, heads, width // heads).transpose(0, 1)
    k = ((keys + table) @ wk.T + bk).view(-1, heads, width // heads).transpose(0, 1)
    v = (keys @ wv.T + bv).view(-1, heads, width // heads).transpose(0, 1)
    attended = torch.softmax(q @ k.transpose(1, 2) / (width // heads) ** 0.5, dim=-1) @ v
    out = F.linear(
        attended.transpose(0, 1).reshape(-1, width), resampler.attn.out_proj.weight, resampler.attn.out_proj.bias
    )
    return resampler.ln_post(out) @ resampler.proj


@pytest.mark.parametrize("version", ["2.6", "2.5"])
def test_padded_batch_equals_each_slice_alone(version):
    """Slices of 32 x 64, 20 x 40 and 7 x 50 patches packed into the 32 x 64 grid's graph as vLLM packs
    them (_mcpmv_pack_flat_pixels: patch i of a slice at grid position i), the rest masked."""
    adapter, config, tower = _tiny(version)
    layout = next(g for g in adapter.graph_layouts(config, (48,), 4) if g.path == "grid 32x64")
    inputs = adapter.make_inputs(tower, config, layout, "float32", torch.device("cpu"), torch.Generator())
    assert [tuple(v.shape) for v in inputs.values()] == [(3, 3, 64, 128), (3, 2048), (3, 2)]
    assert inputs["patch_attention_mask"].all() and inputs["tgt_sizes"].tolist() == [[32, 64]] * 3
    sizes, p = [(32, 64), (20, 40), (7, 50)], 2
    patches = [
        torch.randn(rows * cols, 3, p, p, generator=torch.Generator().manual_seed(i))
        for i, (rows, cols) in enumerate(sizes)
    ]
    packed = torch.zeros(3, 2048, 3, p, p)
    for i, part in enumerate(patches):
        packed[i, : len(part)] = part
    inputs["pixel_values"] = packed.view(3, 32, 64, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(3, 3, 64, 128)
    inputs["patch_attention_mask"] = torch.arange(2048) < torch.tensor([r * c for r, c in sizes]).unsqueeze(1)
    inputs["tgt_sizes"] = torch.tensor(sizes)
    with torch.inference_mode():
        (batched,) = adapter.forward(tower, inputs)
        alone = [
            _slice_alone(tower, part, rows, cols, version == "2.5")
            for part, (rows, cols) in zip(patches, sizes, strict=True)
        ]
    assert batched.shape == (3 * 16, 256)
    torch.testing.assert_close(batched, torch.cat(alone), atol=2e-5, rtol=1e-4)
