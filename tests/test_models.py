"""Config loading, aliases and adapters on tiny configs (CPU)."""

import json
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.grids import per_grid
from encgraph_profiler.models.registry import (
    adapters,
    bundled_names,
    bundled_parameters,
    refusals,
    resolve,
    tiny_config_name,
)
from encgraph_profiler.request import DEFAULT_CAPABILITY, ProfileRequest, prepare

PUBLISHED = Path(__file__).parent / "data" / "published"  # files as model repositories publish them
# Each family's tiny config; the families with several encoder paths are tested on their own below.
TINY = [tiny_config_name(a) for a in adapters() if a.paths == ("",)]


@pytest.mark.parametrize("adapter", adapters(), ids=lambda a: a.family)
def test_every_family_has_a_tiny_config_of_its_own(adapter):
    assert resolve(tiny_config_name(adapter)).adapter is adapter


def test_every_bundled_config_is_a_family_and_has_its_parameter_counts():
    counts = bundled_parameters()
    assert sorted(counts) == bundled_names(include_tiny=True) and len(bundled_names()) >= 23
    families = {resolve(name).adapter.family for name in bundled_names()}
    assert families <= {a.family for a in adapters()}


def test_family_names_are_unique_and_aliases_point_to_bundled_configs():
    assert len({a.family for a in adapters()}) == len(adapters())
    model_types = [t for a in adapters() for t in a.model_types]
    assert len(model_types) == len(set(model_types))
    from encgraph_profiler.models.registry import aliases

    assert set(aliases().values()) <= set(bundled_names())


def test_gemma3_layout_is_vllms():
    """min(B // mm_tokens_per_image, k) whole 896 px images; the graph ends at the projector."""
    spec = resolve("Gemma-3-27B-it")
    config = spec.adapter.tower_config(spec.config)
    assert [spec.adapter.layout(config, b, 128).items for b in (256, 1024, 4096, 8192)] == [1, 4, 16, 32]
    assert spec.adapter.layout(config, 4096, 8).items == 8  # capped at k
    assert (
        spec.adapter.layout(config, 4096, 128).meaning
        == "4,096 tokens = 16 images of 896x896 px, 65,536 ViT patches pooled to 256 tokens each"
    )
    with pytest.raises(UsageError, match="below one Gemma 3 image"):
        spec.adapter.layout(config, 255, 128)
    facts = model_facts(spec, "bfloat16")
    assert round(facts.total_parameters / 1e9, 2) == 27.43  # Gemma 3 27B


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Qwen2-VL", "qwen2-vl-7b"),
        ("qwen2.5-vl", "qwen2.5-vl-7b"),
        ("Qwen2_5-VL", "qwen2.5-vl-7b"),
        ("Qwen2-VL-2B-Instruct", "qwen2-vl-2b"),
        ("QWEN3-VL", "qwen3-vl-8b"),
        ("SigLIP", "siglip-so400m-patch14-384"),
        ("InternVL", "internvl3-1b"),
        ("internvl3", "internvl3-1b"),
        ("Qwen3.5", "qwen3.5-27b"),
        ("Qwen3.5-27B", "qwen3.5-27b"),
        ("Qwen3-VL-MoE", "qwen3-vl-30b-a3b"),
        ("Qwen3-VL-30B-A3B-Instruct", "qwen3-vl-30b-a3b"),
        ("GLM-4.1V", "glm-4.1v-9b"),
        ("GLM-4.1V-9B-Thinking", "glm-4.1v-9b"),
        ("glm4v", "glm-4.1v-9b"),
        ("Gemma4", "gemma-4-31b"),
        ("gemma-4-31B-it", "gemma-4-31b"),
        ("gemma-4-E4B-it", "gemma-4-e4b"),
        ("Kimi", "kimi-k2.5"),
        ("Kimi-K2.5", "kimi-k2.5"),
        ("Kimi-VL", "kimi-vl-a3b"),
        ("Kimi-VL-A3B-Instruct", "kimi-vl-a3b"),
        ("LFM2-VL", "lfm2-vl-1.6b"),
        ("LFM2-VL-1.6B", "lfm2-vl-1.6b"),
        ("LFM2-VL-450M", "lfm2-vl-450m"),
        ("ERNIE-4.5-VL", "ernie-4.5-vl-28b-a3b"),
        ("ernie4.5-vl", "ernie-4.5-vl-28b-a3b"),
        ("ERNIE-4.5-VL-28B-A3B-PT", "ernie-4.5-vl-28b-a3b"),
        ("ERNIE-4.5-VL-28B-A3B-Thinking", "ernie-4.5-vl-28b-a3b"),
        ("DeepSeek-OCR-2", "deepseek-ocr-2"),
        ("deepseek-ocr2", "deepseek-ocr-2"),
        ("GLM-4.6V", "glm-4.6v"),
        ("GLM-4.5V", "glm-4.5v"),
        ("glm4v-moe", "glm-4.6v"),
    ],
)
def test_aliases_resolve(name, expected):
    assert resolve(name).name == expected


@pytest.mark.parametrize(
    "name, repo_id",
    [
        ("Step-3.7", "stepfun-ai/Step-3.7-Flash"),
        ("Step-3.7-Flash", "stepfun-ai/Step-3.7-Flash"),
        ("step3p7", "stepfun-ai/Step-3.7-Flash"),
        ("Step3-VL", "stepfun-ai/Step3-VL-10B"),
        ("Step3-VL-10B", "stepfun-ai/Step3-VL-10B"),
        ("DeepSeek-VL2-Small", "deepseek-ai/deepseek-vl2-small"),
        ("MiniCPM-V-4", "openbmb/MiniCPM-V-4"),
        ("MiniCPM-o-2_6", "openbmb/MiniCPM-o-2_6"),
    ],
)
def test_names_of_a_family_read_by_id_only_point_to_the_id(name, repo_id):
    with pytest.raises(UsageError, match=f"no bundled config: give its Hugging Face id \\({repo_id}\\)"):
        resolve(name)


@pytest.mark.parametrize(
    "name, model_type, reason",
    [
        ("MiniCPM-V-4.6", "minicpmv4_6", "MiniCPM-V 4.6 has no resampler"),
        ("minicpm-v-4_7", "minicpmv4_7", "vLLM does not capture encoder CUDA graphs for it"),
        ("Step3", "step3_vl", "Step3-VL-10B, model_type step_robotics"),
    ],
)
def test_names_of_a_refused_family_give_its_reason(name, model_type, reason):
    with pytest.raises(UsageError, match=f"^{name} \\({model_type}\\) is not supported: .*{reason}"):
        resolve(name)


def test_every_refused_name_points_to_a_refusal_and_none_to_a_bundled_config():
    names = [name for refusal in refusals().values() for name in refusal.names]
    assert all(refusal.names for refusal in refusals().values()) and len(names) == len(set(names))
    assert not set(names) & set(bundled_names(include_tiny=True))
    assert resolve("DeepSeek-OCR-2").name == "deepseek-ocr-2"  # a refused family's successor still resolves


def test_unknown_model_lists_close_names():
    with pytest.raises(UsageError, match="did you mean qwen2-vl"):
        resolve("qwen2-vll")


def test_local_config_path_and_directory(tmp_path):
    source = resolve("tiny-qwen2-vl").source
    (tmp_path / "config.json").write_text(source.read_text())
    assert resolve(str(tmp_path)).adapter.family == "qwen2-vl"
    assert resolve(str(tmp_path / "config.json")).adapter.family == "qwen2-vl"
    (tmp_path / "other.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UsageError, match="not supported"):
        resolve(str(tmp_path / "other.json"))


# Tower sizes of the real checkpoints, counted on the meta device from their published configs.
@pytest.mark.parametrize(
    "name, tower_millions",
    [
        ("qwen2-vl-2b", 665.27),
        ("qwen2-vl-7b", 675.76),
        ("qwen2.5-vl-7b", 676.55),
        ("qwen3-vl-8b", 576.39),
        ("siglip-so400m-patch14-384", 428.23),
        ("clip-vit-large-patch14-336", 303.51),
    ],
)
def test_tower_parameters_match_the_real_checkpoints(name, tower_millions):
    assert round(model_facts(resolve(name), "bfloat16").tower_parameters / 1e6, 2) == tower_millions


# Whole-model sizes of the bundled published configs, against what their authors state: GLM-4.1V-9B-Thinking
# ~10.3 B; Qwen3-VL-30B-A3B ~31.1 B; Qwen3.5-27B 27.36 B here, its 55.56 GB of bf16 safetensors (27.78 B) also holding
# the multi-token-prediction layer that transformers does not build (0.42 B at these sizes); Gemma 4 31B: 30.7 B
# without its ~550 M vision encoder, Gemma 4 E4B 8 B with its per-layer embeddings; Kimi-K2.5: 1 T; LFM2-VL-1.6B: 1.6 B
# (its 400 M SigLIP2 NaFlex tower cut to 26
# blocks, plus the projector); ERNIE-4.5-VL-28B-A3B: 28 B, the language model with its text and vision experts (checked
# in test_remote_code.py), here with the 630 M ViT and the 144 M resampler; DeepSeek-OCR 2: its published checkpoint
# index records 6,779,249,408 bytes of bf16 weights, 3.39 B parameters; GLM-4.5V and GLM-4.6V: GLM-4.5-Air's 106 B
# language model (106.85 B here) with the 859 M tower; Kimi-VL-A3B: 16 B, its 400 M MoonViT with the projector;
# DeepSeek-OCR: its model.safetensors lists 3,336,106,240 parameters; MiniMax-M3: its 59 shards list 427,040,140,160,
# here less 57 x 128 router correction biases (buffers in transformers); MiniCPM-V 2.6 and 2.5: their bf16 / fp16
# shards total 16.19 GB and 17.08 GB (8.10 B and 8.54 B at 2 bytes each).
@pytest.mark.parametrize(
    "name, total_billions, tower_millions",
    [
        ("glm-4.1v-9b", 10.29, 892.50),
        ("qwen3-vl-30b-a3b", 31.07, 538.63),
        ("qwen3.5-27b", 27.36, 460.73),
        ("gemma-4-31b", 31.27, 575.74),
        ("gemma-4-e4b", 7.94, 169.33),
        ("kimi-k2.5", 1026.88, 471.14),
        ("lfm2-vl-1.6b", 1.58, 414.46),
        ("ernie-4.5-vl-28b-a3b", 29.40, 630.43),
        ("deepseek-ocr-2", 3.39, 454.38),
        ("glm-4.5v", 107.71, 858.68),
        ("glm-4.6v", 107.71, 858.68),
        ("kimi-vl-a3b", 16.41, 447.55),
        ("deepseek-ocr", 3.34, 401.37),
        ("minimax-m3", 427.04, 865.57),
        ("minicpm-v-2-6", 8.10, 486.41),
        ("minicpm-llama3-v-2-5", 8.54, 506.83),
    ],
)
def test_published_configs_give_the_published_sizes(name, total_billions, tower_millions):
    facts = model_facts(resolve(name), "bfloat16")
    assert round(facts.total_parameters / 1e9, 2) == total_billions
    assert round(facts.tower_parameters / 1e6, 2) == tower_millions


def test_glm41v_current_published_form_builds_what_its_first_form_does():
    """zai-org/GLM-4.1V-9B-Thinking's config.json now nests its text model (glm4v_text); the bundled
    one is its first, flat form. Both must give the same model."""
    current = model_facts(resolve(str(PUBLISHED / "glm-4.1v-9b-thinking.config.json")), "bfloat16")
    first = model_facts(resolve("glm-4.1v-9b"), "bfloat16")
    assert (current.total_parameters, current.tower_parameters) == (first.total_parameters, first.tower_parameters)
    assert current.kv_bytes_per_token == first.kv_bytes_per_token


def test_parameter_counts_file_is_current():
    """`encgraph models` reads configs/parameters.json; recount every bundled config on the meta device."""
    from encgraph_profiler.models.registry import bundled_parameters

    recorded = bundled_parameters()
    assert sorted(recorded) == sorted(bundled_names(include_tiny=True)), "run tools/count_parameters.py"
    for name, counts in recorded.items():
        facts = model_facts(resolve(name), "bfloat16")
        assert counts == {"tower_parameters": facts.tower_parameters, "total_parameters": facts.total_parameters}, name


def test_kv_bytes_per_token_from_text_config():
    facts = model_facts(resolve("qwen2-vl-7b"), "bfloat16")
    assert facts.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2
    assert facts.weight_bytes == facts.total_parameters * 2
    assert model_facts(resolve("siglip"), "bfloat16").kv_bytes_per_token is None
    # Multi-head latent attention (Kimi-VL-A3B's DeepSeek-V3 language model): one 512-wide latent and
    # one 64-wide rotary key per layer, as vLLM's MLA cache holds them.
    assert model_facts(resolve("kimi-vl"), "bfloat16").kv_bytes_per_token == 27 * (512 + 64) * 2


def test_hybrid_models_count_only_layers_with_a_kv_cache():
    # tiny-qwen3.5: 3 linear-attention layers and 1 full-attention layer, 2 KV heads of 16.
    assert model_facts(resolve("tiny-qwen3.5"), "bfloat16").kv_bytes_per_token == 2 * 1 * 2 * 16 * 2
    assert model_facts(resolve("tiny-qwen3-vl-moe"), "bfloat16").kv_bytes_per_token == 2 * 2 * 2 * 16 * 2


@pytest.mark.parametrize(
    "name, family, deepstack",
    [
        ("tiny-qwen3-vl-moe", "qwen3-vl-moe", 2),
        ("tiny-qwen3.5", "qwen3.5", 0),
        ("tiny-qwen3.5-moe", "qwen3.5-moe", 0),
    ],
)
def test_new_qwen_families_capture_the_merger_and_deepstack_outputs(name, family, deepstack):
    spec = resolve(name)
    vision = spec.adapter.tower_config(spec.config)
    tower = spec.adapter.build_tower(vision, "float32", "sdpa")
    layout = spec.adapter.layout(vision, 64, 2)
    inputs = spec.adapter.make_inputs(
        tower, vision, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        outputs = spec.adapter.forward(tower, inputs)
    assert spec.adapter.family == family and len(outputs) == 1 + deepstack
    assert outputs[0].shape == (layout.tokens, vision.out_hidden_size)


def test_qwen_layout_is_vllms():
    spec = resolve("qwen2-vl-7b")
    vision = spec.adapter.tower_config(spec.config)
    layout = spec.adapter.layout(vision, 1000, 3)
    assert layout.grids == ((1, 2, 668),) * 3  # [1, m, ceil(B/k) * m]
    assert layout.tokens == 1002 and layout.input_patches == 3 * 2 * 668
    assert layout.meaning == "1,000 tokens = 3 images of 28x9352 px, 4,008 ViT patches merged 2x2"


def test_fixed_resolution_layout_is_whole_images():
    spec = resolve("siglip")
    vision = spec.adapter.tower_config(spec.config)
    assert spec.adapter.layout(vision, 4096, 0).items == 5  # 729 tokens per 384px image
    assert (
        spec.adapter.layout(vision, 4096, 0).meaning
        == "3,645 tokens (budget 4,096, in whole items) = 5 images of 384x384 px, 3,645 ViT patches"
    )
    with pytest.raises(UsageError, match="smaller than one"):
        spec.adapter.layout(vision, 512, 0)


@pytest.mark.parametrize("name", TINY)
def test_precomputed_forward_equals_plain_forward(name):
    spec = resolve(name)
    adapter = spec.adapter
    vision = adapter.tower_config(spec.config)
    torch.manual_seed(0)
    tower = adapter.build_tower(vision, "float32", "sdpa")
    layout = adapter.graph_layouts(vision, (256 if adapter.dynamic_resolution else 40,), 4)[0]
    inputs = adapter.make_inputs(
        tower, vision, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        fast = adapter.forward(tower, inputs)
        plain = adapter.reference_forward(tower, inputs)
    assert len(fast) == len(plain) >= 1
    for a, b in zip(fast, plain, strict=True):
        assert torch.equal(a, b)
    # Rows per image (with or without a CLS token), per budget, or per ViT patch (a graph that ends
    # before the merge).
    rows = (layout.tokens // layout.items + 1, layout.tokens // layout.items, layout.tokens, layout.input_patches)
    assert fast[0].shape[-2 if not adapter.dynamic_resolution else 0] in rows


def _projected(model, pixel_values):
    """Llama 4: the model projects the vision model's output in its forward, not in get_image_features
    (which some transformers versions call with the feature strategy)."""
    features = model.get_image_features(pixel_values, vision_feature_select_strategy="default").last_hidden_state
    return model.multi_modal_projector(features.view(-1, features.size(-1)))


def _whole_tiles(model, pixel_values):
    """Idefics3 / SmolVLM: one batch of whole tiles with a pixel-level mask, as the processor hands
    them over; some transformers versions split the features per batch entry."""
    mask = torch.ones(1, *pixel_values.shape[:1], *pixel_values.shape[2:], dtype=torch.bool)
    features = model.get_image_features(pixel_values[None], mask).pooler_output
    return torch.cat(list(features)) if isinstance(features, (list, tuple)) else features


# For each family: the captured module's parts (module attribute -> the model's attribute) and what
# the whole model computes from the same inputs.
IMAGE_FEATURES = {
    "tiny-gemma3": (
        {"vision_tower": "vision_tower", "multi_modal_projector": "multi_modal_projector"},
        lambda model, inputs: model.get_image_features(inputs["pixel_values"]).pooler_output,
    ),
    "tiny-internvl": (
        {"vision_tower": "vision_tower", "multi_modal_projector": "multi_modal_projector"},
        lambda model, inputs: model.get_image_features(inputs["pixel_values"]).pooler_output,
    ),
    "tiny-llama4": (
        {"vision_model": "vision_model", "multi_modal_projector": "multi_modal_projector"},
        lambda model, inputs: _projected(model, inputs["pixel_values"]),
    ),
    "tiny-glm4v": (
        {"": "visual"},
        lambda model, inputs: torch.cat(
            model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).pooler_output
        ),
    ),
    "tiny-glm46v": (
        {"": "visual"},
        lambda model, inputs: torch.cat(
            model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).pooler_output
        ),
    ),
    "tiny-glm4v-moe": (
        {"": "visual"},
        lambda model, inputs: torch.cat(
            model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).pooler_output
        ),
    ),
    # ERNIE-4.5-VL: the graph ends at the ViT; the resampler runs after it, outside the graph.
    "tiny-ernie4.5-vl": (
        {"": "vision_tower"},
        lambda model, inputs: model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).last_hidden_state,
    ),
    "tiny-kimi-k2.5": (
        {"vision_tower": "vision_tower", "mm_projector": "mm_projector"},
        lambda model, inputs: torch.cat(
            model.get_image_features(inputs["pixel_values"], inputs["grid_thw"]).pooler_output
        ),
    ),
    "tiny-kimi-vl": (
        {"vision_tower": "vision_tower", "mm_projector": "mm_projector"},
        lambda model, inputs: torch.cat(
            model.get_image_features(inputs["pixel_values"], inputs["grid_thw"]).pooler_output
        ),
    ),
    "tiny-idefics3": (
        {"vision_model": "vision_model", "connector": "connector"},
        lambda model, inputs: _whole_tiles(model, inputs["pixel_values"]),
    ),
    "tiny-smolvlm": (
        {"vision_model": "vision_model", "connector": "connector"},
        lambda model, inputs: _whole_tiles(model, inputs["pixel_values"]),
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGE_FEATURES))
def test_captured_module_equals_the_models_own_image_features(name):
    """The captured module computes what the full model computes from pixels, weight for weight."""
    spec = resolve(name)
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    full = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval()
    model = getattr(full, "model", full)  # Llama 4 keeps its parts on the outer model
    parts, theirs = IMAGE_FEATURES[name]
    for ours_name, their_name in parts.items():
        target = tower.get_submodule(ours_name) if ours_name else tower
        target.load_state_dict(model.get_submodule(their_name).state_dict())
    budget = 256 if adapter.dynamic_resolution else 16
    inputs = adapter.make_inputs(
        tower,
        config,
        adapter.layout(config, budget, 4),
        "float32",
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        expected = theirs(model, inputs)
    assert torch.equal(ours.reshape(expected.shape), expected)


def test_internvl_layout_is_vllms():
    """max(B // 256, 1) tiles of 448 px: the maximum items per batch does not apply."""
    spec = resolve("tiny-internvl")
    config = spec.adapter.tower_config(spec.config)
    assert spec.adapter.tokens_per_tile(config) == 4  # (56 / 14)^2 patches x 0.5^2
    assert [spec.adapter.layout(config, b, 1).items for b in (1, 4, 9, 64)] == [1, 1, 2, 16]


def test_llama4_layout_is_vllms():
    """max(1, ceil(B / 144)) chunks of 336 px; the maximum items per batch does not apply."""
    spec = resolve("Llama-4-Scout-17B-16E-Instruct")
    config = spec.adapter.tower_config(spec.config)
    assert spec.adapter.tokens_per_tile(config) == 144  # (336 / 14)^2 patches x 0.5^2
    assert [spec.adapter.layout(config, b, 1).items for b in (1, 144, 145, 1024, 8192)] == [1, 1, 2, 8, 57]
    assert spec.adapter.layout(config, 1024, 1).meaning == (
        "1,152 tokens (budget 1,024, in whole items) = 8 chunks of 336x336 px, "
        "4,608 ViT patches shuffled to 144 tokens each"
    )
    # Meta's configs give attn_temperature_tuning as 4; transformers 5 reads only a bool.
    assert json.loads(spec.source.read_text())["text_config"]["attn_temperature_tuning"] == 4
    assert spec.config["text_config"]["attn_temperature_tuning"] is True  # read as Meta's own form
    assert spec.adapter.full_config(spec.config).text_config.attn_temperature_tuning is True


def test_glm4v_layout_rounds_down():
    """k items of grid [1, m, floor(B / k) * m], where the Qwen families round up."""
    spec = resolve("tiny-glm4v")
    vision = spec.adapter.tower_config(spec.config)
    layout = spec.adapter.layout(vision, 1000, 64)
    assert (layout.items, layout.grids[0], layout.tokens) == (64, (1, 2, 30), 960)
    with pytest.raises(UsageError, match="cannot hold 64 images"):
        spec.adapter.layout(vision, 63, 64)


def test_idefics3_layout_is_vllms():
    """ceil(B / image_seq_len) whole tiles: 64 tokens per 512 px SmolVLM2 tile (scale factor 4)."""
    spec = resolve("SmolVLM2-500M-Video-Instruct")
    config = spec.adapter.tower_config(spec.config)
    assert spec.adapter.tokens_per_tile(config) == 64  # (512 / 16)^2 / 4^2
    assert [spec.adapter.layout(config, b, 8).items for b in (1, 64, 65, 8192)] == [1, 1, 2, 128]


def test_a_field_of_the_wrong_type_is_a_usage_error(tmp_path):
    config = json.loads(resolve("tiny-llama4").source.read_text())
    config["text_config"]["use_qk_norm"] = "yes"
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = resolve(str(tmp_path))
    with pytest.raises(UsageError, match="transformers cannot read this llama4 config"):
        spec.adapter.full_config(spec.config)


def test_gemma4_graphs_are_vllms_one_per_budget_and_row_width():
    """vLLM 0.33.0's gemma4_mm.py: one graph per budget and row width t in (70, 140, 280, 560, 1120)
    up to the configured maximum (default_output_length, 280 in the published configs), each of
    min(max(k, F), max(1, B // t)) rows of t x 3^2 patches, captured budget after budget (largest
    first), each budget's widths in order; the smallest budget is 70, so k = min(8192 // 70, 1024)."""
    from helpers import request

    from encgraph_profiler.request import ProfileRequest, prepare

    setup = prepare(ProfileRequest(model="gemma-4-31b", budgets=(1024, 2048, 4096, 8192)))
    assert setup.settings.max_items == 117
    expected = [
        (f"rows of {t}", b, min(117, max(1, b // t)), min(117, max(1, b // t)) * t * 9)
        for b in (8192, 4096, 2048, 1024)
        for t in (70, 140, 280)
    ]
    assert [(g.path, g.budget, g.items, g.input_patches) for g in setup.capture_order()] == expected
    assert {g.tokens for g in setup.layouts if g.budget == 8192} == {8192}  # B tokens gathered from the rows
    # Frames per batch raise the rows to F where B // t allows: k = min(8192 // 70, 70) = 70 here.
    images = prepare(request("gemma-4-31b", (70, 8192), capture="vllm"))
    video = prepare(request("gemma-4-31b", (70, 8192), capture="vllm", max_frames_per_batch=256))
    rows = {(g.path, g.budget): g.items for g in images.layouts}, {(g.path, g.budget): g.items for g in video.layouts}
    assert rows[0][("rows of 70", 8192)] == 70 and rows[1][("rows of 70", 8192)] == 117
    assert rows[0][("rows of 280", 70)] == rows[1][("rows of 280", 70)] == 1


def test_gemma4_row_widths_follow_the_configured_maximum(tmp_path):
    """The config's default_output_length where it has one; else the image processor's
    max_soft_tokens (processor_config.json first, then preprocessor_config.json), else 280."""
    spec = resolve("tiny-gemma4")  # no default_output_length
    assert spec.adapter.widths(spec.adapter.tower_config(spec.config)) == (70, 140, 280)
    (tmp_path / "config.json").write_text(spec.source.read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"max_soft_tokens": 140, "image_mean": [0.5] * 3}))
    local = resolve(str(tmp_path))
    assert local.config["preprocessor_config"] == {"max_soft_tokens": 140}
    assert local.adapter.widths(local.adapter.tower_config(local.config)) == (70, 140)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"max_soft_tokens": "lots"}))
    with pytest.raises(UsageError, match="max_soft_tokens is 'lots'"):
        local.adapter.tower_config(resolve(str(tmp_path)).config)
    # transformers 5 saves the image processor inside processor_config.json, and reads it from there first.
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {"max_soft_tokens": 70}}))
    assert resolve(str(tmp_path)).config["preprocessor_config"] == {"max_soft_tokens": 70}
    config = json.loads(spec.source.read_text())
    config["vision_config"]["default_output_length"] = 560
    (tmp_path / "config.json").write_text(json.dumps(config))
    local = resolve(str(tmp_path))
    assert local.adapter.widths(local.adapter.tower_config(local.config)) == (70, 140, 280, 560)


@pytest.mark.parametrize(
    "config, processor_file, name, expected",
    [
        # google/gemma-4-31B-it and gemma-4-E4B-it publish the same processor_config.json, and their image processor
        # only inside it.
        ("gemma-4-31b", "gemma-4-it.processor_config.json", "processor_config.json", {"max_soft_tokens": 280}),
        ("lfm2-vl-1.6b", "lfm2-vl-1.6b.preprocessor_config.json", "preprocessor_config.json", {"min_image_tokens": 64}),
    ],
)
def test_published_image_processor_files_are_read(tmp_path, config, processor_file, name, expected):
    (tmp_path / "config.json").write_text(resolve(config).source.read_text())
    data = json.loads((PUBLISHED / processor_file).read_text())
    # Changed from the published value, so that a file that went unread would show.
    fields = data.get("image_processor", data)
    key = next(iter(expected))
    fields[key] //= 2
    (tmp_path / name).write_text(json.dumps(data))
    assert resolve(str(tmp_path)).config["preprocessor_config"] == {key: expected[key] // 2}


def test_gemma4_graph_equals_the_models_own_image_features():
    """Gathering each row's valid soft tokens, the graph's steps give what get_image_features returns."""
    spec = resolve("tiny-gemma4")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    full = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval()
    tower.vision_tower.load_state_dict(full.model.vision_tower.state_dict())
    tower.embed_vision.load_state_dict(full.model.embed_vision.state_dict())
    layout = next(g for g in adapter.graph_layouts(config, (600,), 4) if g.path == "rows of 280")
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert inputs["gather_indices"].shape == (600,) and layout.items == 2
    vision, positions = tower.vision_tower, inputs["pixel_position_ids"]
    with torch.inference_mode():
        padding = (positions == -1).all(dim=-1)
        embeds = vision.patch_embedder(inputs["pixel_values"], positions, padding)
        hidden = vision.encoder(inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=positions)
        _, valid = vision.pooler(hidden_states=hidden.last_hidden_state, pixel_position_ids=positions,
                                 padding_positions=padding, output_length=280)  # fmt: skip
        inputs["gather_indices"] = valid.flatten().nonzero().flatten()
        (ours,) = adapter.forward(tower, inputs)
        theirs = full.model.get_image_features(inputs["pixel_values"], positions).pooler_output
    assert [t.shape[0] for t in theirs] == [260, 260]  # a 13 x 20 grid of soft tokens less its last row
    assert torch.equal(ours, torch.cat(list(theirs)))


def _vllm_0_33_kimi_grid(budget, items, kh=2, kw=2, rope_side=512):
    """vLLM 0.33.0's prepare_encoder_cudagraph_capture_inputs (kimi_k25.py and kimi_vl.py), restated."""
    per_item = (budget + items - 1) // items
    wo = min(per_item, rope_side // kw)
    ho = (per_item + wo - 1) // wo
    assert ho * kh <= rope_side
    return (1, ho * kh, wo * kw)


KIMI_LADDER = (64, 128, 256, 512, 1000, 1024, 2048, 4096, 8192)


@pytest.mark.parametrize("name", ["kimi-k2.5", "kimi-vl-a3b"])
@pytest.mark.parametrize("budgets", [KIMI_LADDER, (1024, 2048, 4096, 8192), (1000,)])
def test_kimi_layouts_are_vllm_0_33s(name, budgets):
    """Each budget's capture at the bundled config, with k as vLLM picks it (its smallest Kimi budget
    is 64: k = min(max // 64, smallest budget)): k items of ceil(B / k) tokens in rows of at most
    256 windows; the longest sequence vLLM bakes in; Kimi-K2.5's one spare zero-length sequence."""
    from encgraph_profiler.request import ProfileRequest, Strategy, prepare
    from encgraph_profiler.schema import Capture

    k = min(max(budgets) // 64, min(budgets))
    plain = prepare(ProfileRequest(model=name, budgets=budgets, attn="sdpa"))
    vllm = prepare(ProfileRequest(model=name, budgets=budgets, attn="sdpa", strategy=Strategy(capture=Capture.VLLM)))
    assert plain.settings.max_items == vllm.settings.max_items == k
    for ours, theirs in zip(plain.layouts, vllm.layouts, strict=True):
        budget, grid = ours.budget, _vllm_0_33_kimi_grid(ours.budget, k)
        assert ours.grids == theirs.grids == (grid,) * k
        assert ours.tokens == k * grid[1] * grid[2] // 4 >= budget and ours.input_patches == k * grid[1] * grid[2]
        assert (ours.max_seqlen, ours.spare_sequences) == (0, 0)  # the tower on its own inputs
        assert (theirs.max_seqlen, theirs.spare_sequences) == ((budget * 4, 1) if name == "kimi-k2.5" else (budget, 0))


def test_kimi_grids_beside_vllm_0_33s_table():
    """A literal table, read off vLLM 0.33.0's rule by hand (budget, k) -> grid and tokens."""
    spec = resolve("kimi-vl-a3b")
    config = spec.adapter.tower_config(spec.config)
    table = {
        (64, 64): ((1, 2, 2), 64),
        (1000, 64): ((1, 2, 32), 1024),  # 16 tokens an item
        (8192, 64): ((1, 2, 256), 8192),
        (8192, 128): ((1, 2, 128), 8192),
        (1000, 15): ((1, 2, 134), 1005),  # --budgets 1000 alone: k = 1000 // 64
        (8192, 16): ((1, 4, 512), 8192),  # 512 tokens an item: two rows of 256
        (1000, 1): ((1, 8, 512), 1024),  # four rows, the last partly past the budget
        (2**16, 1): ((1, 512, 512), 2**16),  # the whole RoPE table
    }
    for (budget, items), (grid, tokens) in table.items():
        layout = spec.adapter.layout(config, budget, items)
        assert (layout.grids[0], layout.tokens) == (grid, tokens), (budget, items)


@pytest.mark.parametrize("name", ["tiny-kimi-k2.5", "tiny-kimi-vl"])
def test_kimi_budget_past_the_rope_table_is_refused_with_vllms_reason(name):
    """vLLM asserts each item fits its 512 x 512-patch RoPE table: 65,536 tokens at 2 x 2 windows."""
    spec = resolve(name)
    config = spec.adapter.tower_config(spec.config)
    with pytest.raises(
        UsageError, match=r"exceeds RoPE grid capacity, max 65,536 tokens\): give --max-items 2 or more"
    ):
        spec.adapter.layout(config, 2**16 + 1, 1)


@pytest.mark.parametrize("name", ["tiny-kimi-k2.5", "tiny-kimi-vl"])
def test_kimi_rows_and_spare_sequence_equal_the_models_own_image_features(name):
    """An item of more than 256 tokens is laid out in rows (here 300 tokens: 2 rows of 256 windows),
    and vLLM's capture inputs leave the features as the model computes them from pixels."""
    spec = resolve(name)
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    full = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval()
    for part in ("vision_tower", "mm_projector"):
        tower.get_submodule(part).load_state_dict(full.model.get_submodule(part).state_dict())
    layout = adapter.vllm_layout(adapter.layout(config, 600, 2), config, 0)
    assert layout.grids == ((1, 4, 512),) * 2 and layout.tokens == 1024
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert layout.spare_sequences == (name == "tiny-kimi-k2.5")  # left out of sdpa's split: test_varlen.py
    assert inputs["cu_seqlens"].tolist() == [0, 2048, 4096]
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        expected = torch.cat(full.model.get_image_features(inputs["pixel_values"], inputs["grid_thw"]).pooler_output)
    assert torch.equal(ours.reshape(expected.shape), expected)


def test_lfm2_vl_layout_and_graph_are_vllms():
    """ceil(B / 64) tiles of 2 x (2 t) patches, t = 64 but for the last; the graph, with positions,
    padding mask and patch gather precomputed, equals the model's own get_image_features."""
    spec = resolve("tiny-lfm2-vl")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    assert adapter.tile_tokens(config, 150) == [64, 64, 22] and adapter.min_budget(config) == 64
    tower = adapter.build_tower(config, "float32", "sdpa")
    full = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval()
    tower.vision_tower.load_state_dict(full.model.vision_tower.state_dict())
    tower.multi_modal_projector.load_state_dict(full.model.multi_modal_projector.state_dict())
    layout = adapter.layout(config, 150, 0)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    shapes = torch.tensor([[2, 128], [2, 128], [2, 44]])
    mask = torch.arange(256)[None] < shapes.prod(-1)[:, None]
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        theirs = torch.cat(full.model.get_image_features(inputs["pixel_values"], shapes, mask).pooler_output)
    assert ours.shape[0] == 150 and torch.equal(ours, theirs)
    assert (
        model_facts(spec, "bfloat16").kv_bytes_per_token == 2 * 2 * 16 * 2
    )  # the one attention layer; conv keeps none


def test_step3p7_lays_out_two_paths_as_vllm_does():
    """Global images of 728 px (169 tokens each, at most k of them) and local crops of 504 px (81
    tokens each, k not applying), each path on vLLM's own ladder: from one item doubling up to the
    largest budget, plus the largest."""
    from transformers import Step3p7Config

    from encgraph_profiler.models.families.step3p7 import Step3p7Adapter

    adapter, config = Step3p7Adapter(), Step3p7Config()
    assert adapter.min_budget(config) == 169 and adapter.path_minimums(config) == {"global": 169, "local": 81}
    graphs = adapter.graph_layouts(config, (1024, 2048, 4096, 8192), 8)
    assert [(g.path, g.budget) for g in graphs] == (
        [("global", b) for b in (169, 338, 676, 1352, 2704, 5408, 8192)]
        + [("local", b) for b in (81, 162, 324, 648, 1296, 2592, 5184, 8192)]
    )
    glob, local = adapter.path_layout(config, "global", 1024, 8), adapter.path_layout(config, "local", 1024, 8)
    assert (glob.path, glob.items, glob.tokens, glob.input_patches) == ("global", 6, 1014, 6 * 52 * 52)
    assert (local.path, local.items, local.tokens, local.input_patches) == ("local", 12, 972, 12 * 36 * 36)
    assert [g.items for g in graphs if g.budget == 8192] == [8, 101]  # k caps the images, not the crops
    assert (
        local.meaning == "1,024 tokens = 12 local crops of 504x504 px, 15,552 ViT patches downsampled to 81 tokens each"
    )
    with pytest.raises(UsageError, match="largest budget, 168, is below one step3p7 global item"):
        adapter.graph_layouts(config, (64, 168), 8)


def test_step3_vl_lays_out_its_graphs_as_step37():
    """vLLM's Step3-VL-10B (step_vl.py) builds on step3_vl.py, as Step-3.7 does: the same two paths,
    ladders and items for the same vision sizes."""
    step3_vl, step37 = resolve("tiny-step3-vl"), resolve("tiny-step3p7")

    def graphs(spec):
        config = spec.adapter.tower_config(spec.config)
        return [
            (g.path, g.budget, g.items, g.tokens, g.input_patches, g.meaning)
            for g in spec.adapter.graph_layouts(config, (81, 162, 1024), 4)
        ]

    assert graphs(step3_vl) == graphs(step37)
    assert [g[:3] for g in graphs(step3_vl)][:2] == [("global", 64, 1), ("global", 128, 2)]


def _tower_and_model(name):
    """A tiny family's captured module and its whole model (transformers' class), the same weights
    in both: (adapter, tower config, tower, model)."""
    spec = resolve(name)
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    model = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval().model
    ours = tower.state_dict()
    tower.load_state_dict({key: value for key, value in model.state_dict().items() if key in ours})  # every key: strict
    return adapter, config, tower, model


def test_step3p7_graphs_compute_what_the_model_computes():
    """Each path's captured forward (rotary embedding given) equals the whole model's image
    features for the same pixels, weight for weight."""
    adapter, config, tower, model = _tower_and_model("tiny-step3p7")
    glob, local = adapter.path_layout(config, "global", 162, 2), adapter.path_layout(config, "local", 162, 2)
    images = adapter.make_inputs(tower, config, glob, "float32", torch.device("cpu"), torch.Generator().manual_seed(0))
    crops = adapter.make_inputs(tower, config, local, "float32", torch.device("cpu"), torch.Generator().manual_seed(1))
    with torch.inference_mode():
        (ours_global,), (ours_local,) = adapter.forward(tower, images), adapter.forward(tower, crops)
        alone = torch.cat(model.get_image_features(images["pixel_values"]).pooler_output)
        cropped = model.get_image_features(
            images["pixel_values"][:1], crops["pixel_values"], [local.items]
        ).pooler_output[0]
    assert torch.equal(alone, ours_global.reshape(alone.shape))
    assert torch.equal(cropped[: -ours_global.shape[1]], ours_local.reshape(-1, 64))  # an image's crops come before it
    assert ours_local.shape == (2, 81, 64)


def test_deepseek_ocr2_lays_out_two_paths_as_vllm_does():
    """Global views of 1024 px (256 tokens each, at most k of them) and local crops of 768 px (144
    tokens each, k not applying), each path on vLLM's own ladder."""
    spec = resolve("tiny-deepseek-ocr2")
    adapter, config = spec.adapter, spec.adapter.tower_config(spec.config)
    assert adapter.min_budget(config) == 256
    graphs = adapter.graph_layouts(config, (1024, 2048, 4096, 8192), 8)
    assert [(g.path, g.budget) for g in graphs] == (
        [("global", b) for b in (256, 512, 1024, 2048, 4096, 8192)]
        + [("local", b) for b in (144, 288, 576, 1152, 2304, 4608, 8192)]
    )
    glob, local = adapter.path_layout(config, "global", 1024, 8), adapter.path_layout(config, "local", 1024, 8)
    assert (glob.path, glob.items, glob.tokens, glob.input_patches) == ("global", 4, 1024, 4 * 64 * 64)
    assert (local.path, local.items, local.tokens, local.input_patches) == ("local", 7, 1008, 7 * 48 * 48)
    assert [g.items for g in graphs if g.budget == 8192] == [8, 56]  # k caps the views, not the crops
    assert local.meaning == "1,024 tokens = 7 local crops of 768x768 px, 16,128 SAM patches, 144 tokens each"
    with pytest.raises(UsageError, match="largest budget, 255, is below one deepseek-ocr2 global item"):
        adapter.graph_layouts(config, (255,), 8)


def test_deepseek_ocr2_graphs_compute_what_the_model_computes():
    """Each path's captured forward (position embedding, relative-position tables, mask and rotary
    embedding given) equals the whole model's image features for the same pixels, weight for weight."""
    adapter, config, tower, model = _tower_and_model("tiny-deepseek-ocr2")
    glob, local = adapter.path_layout(config, "global", 300, 2), adapter.path_layout(config, "local", 300, 2)
    views = adapter.make_inputs(tower, config, glob, "float32", torch.device("cpu"), torch.Generator().manual_seed(0))
    crops = adapter.make_inputs(tower, config, local, "float32", torch.device("cpu"), torch.Generator().manual_seed(1))
    with torch.inference_mode():
        (ours_global,), (ours_local,) = adapter.forward(tower, views), adapter.forward(tower, crops)
        alone = model.get_image_features(views["pixel_values"]).pooler_output[0]
        cropped = model.get_image_features(views["pixel_values"], crops["pixel_values"], [local.items]).pooler_output[0]
        (reference,) = adapter.reference_forward(tower, crops)
    assert ours_global.shape == (1, 256, 64) and ours_local.shape == (2, 144, 64)
    assert torch.equal(alone[:-1], ours_global[0])  # the view separator follows each image's tokens
    assert torch.equal(cropped[: 2 * 144], ours_local.reshape(-1, 64))  # an image's crops come before it
    assert torch.equal(reference, ours_local)  # and the blocks compute their own tables again afterwards


def test_deepseek_ocr2_refuses_views_its_queries_do_not_fit():
    data = json.loads(resolve("tiny-deepseek-ocr2").source.read_text())
    data["vision_config"]["sam_config"]["image_size"] = 896
    with pytest.raises(UsageError, match="queries fit 1024 px views of 16 px patches only"):
        resolve("tiny-deepseek-ocr2").adapter.check_config(data, "config.json")


def test_per_grid_builds_each_run_of_equal_grids_once_and_shifts_indices_image_by_image():
    built = []

    def build(grid):
        built.append(grid)
        t, h, w = grid
        return torch.arange(t * h * w).view(-1, 1) * 10 + h  # values that tell the grids apart

    grids = [(1, 2, 4)] * 3 + [(1, 4, 2)] * 2 + [(1, 2, 4)]
    each = [build(grid) for grid in grids]
    built.clear()
    assert torch.equal(per_grid(grids, build, torch.device("cpu")), torch.cat(each))
    assert built == [(1, 2, 4), (1, 4, 2), (1, 2, 4)]
    # Indices into the packed batch: each image's shifted by the patches of those before it.
    shifted = per_grid(grids, build, torch.device("cpu"), step=lambda grid: grid[1] * grid[2])
    assert torch.equal(shifted, torch.cat([part + 8 * i for i, part in enumerate(each)]))
    on_meta = per_grid(grids, build, torch.device("meta"), step=lambda grid: grid[1] * grid[2])
    assert on_meta.is_meta and on_meta.shape == (48, 1) and on_meta.dtype == torch.long


class _LargestHostTensor(TorchDispatchMode):
    """The most elements of any host (not meta) tensor an operator returns."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor) and not t.is_meta]
        self.elements = max([self.elements, *sizes])
        return out


@pytest.mark.parametrize("name", sorted(tiny_config_name(a) for a in adapters()))
def test_predicted_inputs_hold_nothing_on_the_host_per_patch(name):
    """Issue #28: predicting, a budget's inputs are shapes on the meta device, and what is computed on
    the host for them is one image's (its positions) or a few values an image (segments, grids, window
    lengths), never values for every patch of the batch: at 65,536 tokens (each path's largest batch,
    of hundreds of images) every host tensor has fewer elements than the batch has patches. Per-patch
    tables on the host took MiniMax M3 past 24 GB at the largest budget, 16,777,216 tokens."""
    setup = prepare(ProfileRequest(model=name, budgets=(65536,)), DEFAULT_CAPABILITY)
    adapter, config, dtype = setup.spec.adapter, setup.tower_config, setup.settings.dtype
    with torch.device("meta"):
        tower = adapter.build_tower(config, dtype, setup.settings.attn)
    largest_per_path = {layout.path: layout for layout in sorted(setup.layouts, key=lambda layout: layout.budget)}
    for layout in largest_per_path.values():
        with _LargestHostTensor() as largest:
            adapter.make_inputs(tower, config, layout, dtype, torch.device("meta"), torch.Generator())
        assert largest.elements < layout.input_patches, layout.label
