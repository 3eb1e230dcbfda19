"""Configs published for the authors' own code, read as transformers' native classes (CPU)."""

import json
import math
from pathlib import Path

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve

PUBLISHED = Path(__file__).parent / "data" / "published"  # files as model repositories publish them


def _tower_shapes(source: str) -> dict[str, tuple[int, ...]]:
    """The captured module's parameter shapes, built on the meta device from a config."""
    spec = resolve(source)
    with torch.device("meta"):
        tower = spec.adapter.build_tower(spec.adapter.tower_config(spec.config), "bfloat16", "sdpa")
    return {name: tuple(p.shape) for name, p in tower.named_parameters()}


def _assert_refused_in_one_line(tmp_path, published: Path, change, message: str):
    """A published config, changed, is refused with ``message`` in one line."""
    data = json.loads(published.read_text())
    change(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message) as refused:
        resolve(str(tmp_path))
    assert "\n" not in str(refused.value)


# OpenGVLab/InternVL3-1B's config as its own InternVLChatConfig prints it (a public notebook that
# prints the model and its config), bundled as internvl3-1b; the same print shows the module tree
# checked below.
INTERNVL_CHAT = Path(__file__).parent.parent / "configs" / "internvl3-1b.json"


def test_internvl_chat_reads_as_native_internvl():
    spec = resolve(str(INTERNVL_CHAT))
    assert spec.adapter.family == "internvl"
    config = spec.adapter.tower_config(spec.config)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (
        1024,
        24,
        [448, 448],
        [14, 14],
    )
    assert (vision.attention_bias, vision.use_qk_norm, vision.norm_type) == (True, False, "layer_norm")
    with torch.device("meta"):
        tower = spec.adapter.build_tower(config, "bfloat16", "sdpa")
    # The printed mlp1: LayerNorm(4096), Linear(4096 -> 896), GELU, Linear(896 -> 896).
    projector = tower.multi_modal_projector
    assert projector.layer_norm.normalized_shape == (4096,)
    assert (projector.linear_1.in_features, projector.linear_1.out_features) == (4096, 896)
    assert (projector.linear_2.in_features, projector.linear_2.out_features) == (896, 896)
    assert spec.adapter.layout(config, 4096, 1).items == 16
    facts = model_facts(spec, "bfloat16")
    assert round(facts.total_parameters / 1e9, 2) == 0.94  # InternViT-300M + Qwen2.5-0.5B, untied head


def test_internvl_chat_builds_the_tower_of_opengvlabs_own_conversion():
    """OpenGVLab/InternVL3-1B-hf is OpenGVLab's transformers-format conversion of the same model (its
    published config.json, kept in tests/data/published): the mapped form must build the same tower."""
    converted = _tower_shapes(str(PUBLISHED / "internvl3-1b-hf.config.json"))
    assert len(converted) > 100 and _tower_shapes(str(INTERNVL_CHAT)) == converted


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(ps_version="v1"), "ps_version 'v1'"),
        (lambda d: d["llm_config"].update(model_type="internlm2"), "no InternLM2 language model"),
        (lambda d: d.pop("llm_config"), "needs vision_config and llm_config"),
        (lambda d: d.update(model_type="deepseek_vl_v2"), "needs vision_config and language_config"),
        (lambda d: d.update(model_type="minicpmv"), "query_num must be a whole number above 0"),
        (
            lambda d: d.update(model_type="step3_vl"),
            "Step3-VL-10B, model_type step_robotics, and Step-3.7, model_type step3p7, are",
        ),
        (lambda d: d.update(model_type="minicpmv4_6"), "MiniCPM-V 4.6 has no resampler"),
        (lambda d: d.update(model_type="minicpmv4_7"), "MiniCPM-V 4.7 has no resampler"),
        (lambda d: d.update(model_type="minicpm_ocr"), "MiniCPM-OCR has no resampler"),
        (lambda d: d.update(model_type="ernie4_5_moe_vl", vision_config="none"), "needs a vision_config object"),
    ],
)
def test_forms_that_cannot_be_mapped_are_refused_in_one_line(tmp_path, change, message):
    _assert_refused_in_one_line(tmp_path, INTERNVL_CHAT, change, message)


# moonshotai/Kimi-K2.5's config as its own KimiK25Config prints it (a public model report that also lists
# every weight's shape), bundled as kimi-k2.5: MoonViT sized by vt_* keys, a patchmerger projector.
KIMI_K25 = Path(__file__).parent.parent / "configs" / "kimi-k2.5.json"


def test_kimi_k25_own_form_reads_as_native_kimi_k25():
    spec = resolve(str(KIMI_K25))
    assert spec.adapter.family == "kimi-k2.5"
    config = spec.adapter.tower_config(spec.config)
    vision = config.vision_config
    assert (vision.hidden_size, vision.intermediate_size, vision.num_attention_heads, vision.num_hidden_layers) == (
        1152,
        4304,
        16,
        27,
    )
    assert (vision.patch_size, vision.pos_emb_height, vision.pos_emb_width, vision.pos_emb_time) == (14, 64, 64, 4)
    shapes = _tower_shapes(str(KIMI_K25))
    # The published weights: mm_projector.proj.0 [4608, 4608], proj.2 [7168, 4608], pre_norm [1152],
    # patch_embed.pos_emb [64, 64, 1152], wqkv [3456, 1152] (here q, k and v apart).
    assert sorted(s for n, s in shapes.items() if "projector" in n and n.endswith("weight")) == [
        (1152,),
        (4608, 4608),
        (7168, 4608),
    ]
    assert [s for n, s in shapes.items() if "pos_emb" in n] == [(64, 64, 1152)]
    assert round(model_facts(spec, "bfloat16").total_parameters / 1e12, 3) == 1.027  # "1T total parameters"


@pytest.mark.parametrize(
    "key, value", [("mm_projector_type", "patchmergerv2"), ("merge_type", "sd2"), ("pos_emb_type", "learned")]
)
def test_kimi_k25_own_form_with_a_part_transformers_lacks_is_refused(tmp_path, key, value):
    _assert_refused_in_one_line(
        tmp_path,
        KIMI_K25,
        lambda d: d["vision_config"].update({key: value}),
        f"vision_config {key} '{value}' is built only by the authors' own code",
    )


TINY_KIMI_VL = Path(__file__).parent.parent / "configs" / "tiny" / "tiny-kimi-vl.json"  # Moonshot's own kimi_vl form


def test_kimi_vl_own_form_reads_onto_kimi_k25_classes():
    spec = resolve(str(TINY_KIMI_VL))
    assert spec.adapter.family == "kimi-vl"
    config = spec.adapter.tower_config(spec.config)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.pos_emb_height, vision.pos_emb_width) == (32, 2, 8, 8)
    assert (config.image_token_id, config.projection_hidden_size, config.text_config.q_lora_rank) == (500, 32, None)
    # vLLM's projector: LayerNorm of the vision width, Linear(4 w -> 4 w), GELU, Linear(4 w -> text width).
    shapes = _tower_shapes(str(TINY_KIMI_VL))
    assert sorted(s for n, s in shapes.items() if "projector" in n and n.endswith("weight")) == [
        (32,),
        (48, 128),
        (128, 128),
    ]


KIMI_VL = Path(__file__).parent.parent / "configs" / "kimi-vl-a3b.json"  # moonshotai/Kimi-VL-A3B-Instruct's, bundled


def test_kimi_vl_moonvit_is_kimi_k25s_at_the_same_sizes():
    """Kimi-VL-A3B's published MoonViT (27 blocks of 1152, MLP 4304, 16 heads, patch 14, a 64 x 64
    position table, 2 x 2 merge) builds the bundled Kimi-K2.5's tower, the projector's output width
    (the language model's: 2048 against 7168) aside; and as many parameters as vLLM's MoonViT and
    projector hold (its fused wqkv here apart)."""
    shapes, k25 = _tower_shapes(str(KIMI_VL)), _tower_shapes(str(KIMI_K25))
    output = [name for name in shapes if name.startswith("mm_projector.out_proj")]
    assert {n: s for n, s in shapes.items() if n not in output} == {n: s for n, s in k25.items() if n not in output}
    w, mlp, layers, text = 1152, 4304, 27, 2048
    block = (
        2 * 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * mlp + mlp) + (mlp * w + w)
    )  # norm0/1, wqkv, wo, fc0, fc1
    vit = (
        (3 * 14 * 14 * w + w) + 64 * 64 * w + layers * block + 2 * w
    )  # patch embed, position table, blocks, final norm
    projector = 2 * w + (4 * w * 4 * w + 4 * w) + (4 * w * text + text)  # pre_norm, linear_1, linear_2 (out_proj)
    assert sum(math.prod(s) for s in shapes.values()) == vit + projector


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["vision_config"].update(model_type="moonvit3d"),
            "vision_config model_type 'moonvit3d' is built only by",
        ),
        (lambda d: d.pop("text_config"), "needs vision_config and text_config objects"),
    ],
)
def test_kimi_vl_forms_it_cannot_map_are_refused_in_one_line(tmp_path, change, message):
    _assert_refused_in_one_line(tmp_path, TINY_KIMI_VL, change, message)


# LiquidAI/LFM2-VL-450M's config.json from its first release, for Liquid AI's own code (a public repository keeps
# the downloaded snapshot), bundled as lfm2-vl-450m.
LFM2_VL_EARLY = Path(__file__).parent.parent / "configs" / "lfm2-vl-450m.json"


def test_lfm2_vl_first_release_builds_what_its_current_config_does():
    """LiquidAI/LFM2-VL-450M's config.json today is in transformers' form (kept in tests/data/published):
    its first release, mapped, must build the same model."""
    current = str(PUBLISHED / "lfm2-vl-450m.config.json")
    assert _tower_shapes(str(LFM2_VL_EARLY)) == _tower_shapes(current)
    assert model_facts(resolve(str(LFM2_VL_EARLY)), "bfloat16") == model_facts(resolve(current), "bfloat16")


def test_lfm2_vl_first_release_reads_as_native_lfm2_vl(tmp_path):
    spec = resolve(str(LFM2_VL_EARLY))
    assert spec.adapter.family == "lfm2-vl"
    config = spec.adapter.tower_config(spec.config)
    assert (config.image_token_id, config.projector_use_layernorm, config.vision_config.num_hidden_layers) == (
        396,
        True,
        12,
    )
    assert config.min_image_tokens == 64  # kept in config.json by this form
    assert round(model_facts(spec, "bfloat16").total_parameters / 1e6) == 451  # "450M"
    data = json.loads(LFM2_VL_EARLY.read_text())
    data.update(vision_feature_layer=-2, min_image_tokens=32)
    (tmp_path / "config.json").write_text(json.dumps(data))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_image_tokens": 48}))
    config = resolve(str(tmp_path)).adapter.tower_config(resolve(str(tmp_path)).config)
    assert config.vision_config.num_hidden_layers == 11  # its own code cut the tower at layer -2
    assert config.min_image_tokens == 48  # the preprocessor file, where there is one, wins
    data.update(vision_feature_layer="last")
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="vision_feature_layer is 'last'; it must be a whole number"):
        resolve(str(tmp_path))


# baidu/ERNIE-4.5-VL-28B-A3B-Thinking's config.json, in Baidu's own ernie4_5_moe_vl form (the -Base-PT one is the same
# file; a public repository keeps both downloaded snapshots), bundled as ernie-4.5-vl-28b-a3b.
ERNIE = Path(__file__).parent.parent / "configs" / "ernie-4.5-vl-28b-a3b.json"


def test_ernie_own_form_reads_as_native_ernie4_5_vl_moe():
    spec = resolve(str(ERNIE))
    assert spec.adapter.family == "ernie4.5-vl"
    config = spec.adapter.full_config(spec.config)
    vision, text = config.vision_config, config.text_config
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (
        32,
        1280,
        5120,
        16,
    )  # mlp_ratio 4
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_merge_size, vision.hidden_act) == (
        14,
        2,
        2,
        "quick_gelu",
    )
    assert vision.rms_norm_eps == 1e-5  # the top-level rms_norm_eps, as vLLM's ViT takes it
    # moe_layer_start_index [1, 1], moe_layer_end_index [29, 28], interval 1: every layer but the first is MoE.
    assert text.mlp_layer_types == ["dense"] + ["sparse"] * 27
    assert (text.moe_num_experts, text.moe_intermediate_size, text.moe_k, text.moe_num_shared_experts) == (
        64,
        [1536, 512],
        6,
        2,
    )
    assert (config.image_token_id, text.rope_parameters["mrope_section"]) == (100295, [22, 22, 20])
    facts = model_facts(spec, "bfloat16")
    resampler = 144_225_280  # spatial and temporal 2x2 / 2x merges to the 2560-wide language model
    language_model = facts.total_parameters - facts.tower_parameters - resampler
    # "28B total parameters": 28.62 B here, with text and vision experts and the 265 M tied embeddings; one MoE
    # layer more or less would move it by a billion.
    assert int(language_model / 1e9) == 28
    from transformers import Ernie4_5_VLMoeForConditionalGeneration

    with torch.device("meta"):
        model = Ernie4_5_VLMoeForConditionalGeneration(config)
    assert sum(p.numel() for p in model.model.resampler_model.parameters()) == resampler


def test_ernie_own_form_of_the_424b_model():
    """baidu/ERNIE-4.5-VL-424B-A47B-Paddle's config.json (kept in tests/data/published) states only a start
    index for its MoE layers, an int, and no shared experts: layers 3 to 53 are MoE, 424 B in all."""
    spec = resolve(str(PUBLISHED / "ernie-4.5-vl-424b-a47b.config.json"))
    text = spec.adapter.full_config(spec.config).text_config
    assert text.mlp_layer_types == ["dense"] * 3 + ["sparse"] * 51
    assert (text.moe_num_experts, text.moe_k, text.moe_num_shared_experts) == (64, 8, 0)
    assert round(model_facts(spec, "bfloat16").total_parameters / 1e9) == 424
    assert _tower_shapes(str(PUBLISHED / "ernie-4.5-vl-424b-a47b.config.json")) == _tower_shapes(
        str(ERNIE)
    )  # the same ViT


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d.update(moe_num_experts=[64, 32]),
            "moe_num_experts \\[64, 32\\] differs between text and vision experts",
        ),
        (lambda d: d["vision_config"].update(embed_dim=1024), "embed_dim 1024 differs from hidden_size 1280"),
        (lambda d: d["vision_config"].update(mlp_ratio="four"), "mlp_ratio 'four' and width 1280 give no MLP size"),
        (
            lambda d: d.update(moe_layer_start_index=["one"]),
            "moe_layer_start_index is \\['one'\\]; it must be a whole number of at least 0",
        ),
        (lambda d: d.update(moe_layer_interval=0), "moe_layer_interval is 0; it must be a whole number of at least 1$"),
        (
            lambda d: d.update(num_hidden_layers=[28, 28]),
            "num_hidden_layers is \\[28, 28\\]; it must be a whole number of at least 1$",
        ),
    ],
)
def test_ernie_own_form_that_cannot_be_built_is_refused(tmp_path, change, message):
    _assert_refused_in_one_line(tmp_path, ERNIE, change, message)


# deepseek-ai/DeepSeek-OCR-2's config.json, in DeepSeek's own deepseek_vl_v2 form (the public repository
# sen-ye/DeepSeek-OCR2-query-ablation keeps a copy beside the model's code), bundled as deepseek-ocr-2.
DEEPSEEK_OCR2 = Path(__file__).parent.parent / "configs" / "deepseek-ocr-2.json"


def test_deepseek_ocr2_own_form_reads_as_native_deepseek_ocr2():
    spec = resolve(str(DEEPSEEK_OCR2))
    assert spec.adapter.family == "deepseek-ocr2"
    shapes = _tower_shapes(str(DEEPSEEK_OCR2))
    # The tower vLLM builds: SAM ViT-B (12 blocks of 768, 16 px patches over 1024 px), its neck to 256 channels and the
    # convolutions to 512 and 896; the 24-layer, 896-wide Qwen2 encoder with 2 key-value heads of 64; its 144 and 256
    # learned queries; the linear projector to the 1280-wide language model.
    assert shapes["vision_tower.sam_encoder.patch_embed.projection.weight"] == (768, 3, 16, 16)
    assert len({n.split(".")[3] for n in shapes if n.startswith("vision_tower.sam_encoder.layers.")}) == 12
    assert shapes["vision_tower.sam_encoder.proj.conv2.weight"] == (896, 512, 3, 3)
    assert len({n.split(".")[3] for n in shapes if n.startswith("vision_tower.vision_encoder.layers.")}) == 24
    assert shapes["vision_tower.vision_encoder.layers.0.self_attn.k_proj.weight"] == (128, 896)
    assert shapes["vision_tower.vision_encoder.layers.0.mlp.gate_proj.weight"] == (4864, 896)
    assert (
        shapes["vision_tower.query_768_resolution.weight"],
        shapes["vision_tower.query_1024_resolution.weight"],
    ) == ((144, 896), (256, 896))
    assert shapes["multi_modal_projector.weight"] == (1280, 896)
    # The published checkpoint's index lists one dense MLP (layer 0), then 11 layers of 64 routed and 2 shared experts.
    text = spec.adapter.full_config(spec.config).text_config
    assert text.mlp_layer_types == ["dense"] + ["sparse"] * 11
    assert (text.n_routed_experts, text.n_shared_experts, text.moe_intermediate_size, text.num_key_value_heads) == (
        64,
        2,
        896,
        10,
    )


def test_deepseek_ocr2_own_form_builds_the_tower_vllm_builds_whatever_its_vision_config_says(tmp_path):
    """vLLM builds DeepSeek-OCR 2's tower with fixed sizes: the published vision_config (whose SAM downsample_channels
    say 1024, where the checkpoint's last convolution is 896 wide) is not read, here either."""
    data = json.loads(DEEPSEEK_OCR2.read_text())
    data["vision_config"]["width"]["sam_vit_b"].update(layers=24, width=1024)
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert _tower_shapes(str(tmp_path)) == _tower_shapes(str(DEEPSEEK_OCR2))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d.update(architectures=["DeepseekVLV2ForCausalLM"]),
            "vision_config.image_size is 1024; vLLM builds DeepSeek-VL2's SigLIP so400m",
        ),
        (lambda d: d.pop("language_config"), "needs language_config and projector_config objects"),
        (lambda d: d["language_config"].update(use_mla=True), "multi-head latent attention"),
        (lambda d: d["language_config"].pop("use_mla"), "multi-head latent attention"),  # DeepSeek-V2's default
        (lambda d: d.update(tile_tag="1D"), "tile_tag is '1D'"),
        (lambda d: d["projector_config"].update(projector_type="mlp_gelu"), "projector_type is 'mlp_gelu'"),
        (lambda d: d["projector_config"].update(input_dim=1024), "input_dim is 1024"),
        (lambda d: d["projector_config"].update(n_embed=2048), "n_embed is 2048; .* \\(1280 expected\\)"),
        (
            lambda d: d["language_config"].update(first_k_dense_replace="one"),
            "first_k_dense_replace is 'one'; it must be a whole number",
        ),
        (
            lambda d: d["language_config"].update(moe_layer_freq=0),
            "moe_layer_freq is 0; it must be a whole number of at least 1$",
        ),
    ],
)
def test_deepseek_ocr2_own_form_that_cannot_be_built_is_refused(tmp_path, change, message):
    _assert_refused_in_one_line(tmp_path, DEEPSEEK_OCR2, change, message)


TINY_STEP3_VL = Path(__file__).parent.parent / "configs" / "tiny" / "tiny-step3-vl.json"  # StepFun's step_robotics form


def test_step3_vl_builds_step37s_tower_before_a_qwen3_language_model():
    """Step3-VL-10B's own step_robotics form (a Perception Encoder sized by width, layers, heads and
    mlp_ratio; a Qwen3 text config): at Step-3.7's sizes it builds Step-3.7's tower, weight for weight
    in shape; the whole model adds transformers' Qwen3 language model; the KV cache is Qwen3's."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec = resolve(str(TINY_STEP3_VL))
    assert spec.adapter.family == "step3-vl"
    assert _tower_shapes(str(TINY_STEP3_VL)) == _tower_shapes("tiny-step3p7")
    text = json.loads(TINY_STEP3_VL.read_text())["text_config"]
    with torch.device("meta"):
        language = sum(p.numel() for p in Qwen3ForCausalLM(Qwen3Config(**text)).parameters())
    facts = model_facts(spec, "bfloat16")
    assert facts.total_parameters == facts.tower_parameters + language
    assert facts.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2  # 2 layers of 2 KV heads of 16, keys and values, bf16
    assert facts.max_position_embeddings == 4096


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["vision_config"].update(use_ln_post=True),
            "vision_config use_ln_post True is built only by the authors' own code",
        ),
        (
            lambda d: d["vision_config"].update(use_abs_posemb=False),
            "vision_config use_abs_posemb False is built only by",
        ),
        (lambda d: d["vision_config"].update(ues_cls_token=True), "vision_config ues_cls_token True is built only by"),
        (
            lambda d: d["text_config"].update(model_type="step3p5"),
            "needs a Qwen3 text_config \\(Step3-VL-10B's\\); got 'step3p5'",
        ),
        (lambda d: d.pop("text_config"), "needs a Qwen3 text_config \\(Step3-VL-10B's\\); got none"),
    ],
)
def test_step3_vl_forms_it_cannot_build_are_refused_in_one_line(tmp_path, change, message):
    _assert_refused_in_one_line(tmp_path, TINY_STEP3_VL, change, message)


def test_step3_vl_text_config_qwen3_cannot_read_is_refused_in_one_line(tmp_path):
    data = json.loads(TINY_STEP3_VL.read_text())
    data["text_config"]["num_attention_heads"] = "x"
    (tmp_path / "config.json").write_text(json.dumps(data))
    spec = resolve(str(tmp_path))
    with pytest.raises(UsageError, match=r"^transformers cannot read this step3-vl config: [^\n]*$"):
        model_facts(spec, "bfloat16")


def test_step3p7_in_stepfuns_own_spelling_builds_what_transformers_spelling_does(tmp_path):
    """stepfun-ai/Step-3.7-Flash publishes its config in StepFun's own spelling, which transformers reads
    as step3p7 itself (no mapping here): a perception_encoder vision config sized by width, layers, heads
    and mlp_ratio, and a step3p5 text config with num_attention_groups, moe_num_experts and moe_layers_enum.
    At the published vision sizes it builds the tower transformers' Step3p7Config defaults build."""
    from transformers import Step3p7Config

    own = {
        "model_type": "step3p7",
        "architectures": ["Step3p7ForConditionalGeneration"],
        "projector_bias": False,
        "vision_config": {
            "model_type": "perception_encoder",
            "image_size": 728,
            "patch_size": 14,
            "width": 1536,
            "layers": 47,
            "heads": 16,
            "mlp_ratio": 8960 / 1536,
            "hidden_act": "quick_gelu",
            "use_cls_token": False,
            "use_ln_post": False,
            "ls_init_value": 0.1,
        },
        "text_config": {
            "model_type": "step3p5",
            "hidden_size": 4096,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_attention_groups": 2,
            "head_dim": 64,
            "vocab_size": 512,
            "moe_num_experts": 8,
            "moe_top_k": 2,
            "moe_intermediate_size": 64,
            "share_expert_dim": 64,
            "moe_layers_enum": "1,2,3",
            "num_nextn_predict_layers": 0,
            "layer_types": ["full_attention", "sliding_attention"] * 2,
            "sliding_window": 64,
        },
    }
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "config.json").write_text(json.dumps(own))
    (tmp_path / "native.json").write_text(json.dumps(Step3p7Config().to_dict()))
    spec = resolve(str(tmp_path / "own"))
    text = spec.adapter.full_config(spec.config).text_config
    assert (text.mlp_layer_types, text.n_routed_experts, text.num_key_value_heads) == (
        ["dense", "sparse", "sparse", "sparse"],
        8,
        2,
    )
    shapes = _tower_shapes(str(tmp_path / "own"))
    assert shapes["vision_model.layers.46.mlp.fc1.weight"] == (8960, 1536)
    assert shapes == _tower_shapes(str(tmp_path / "native.json"))
