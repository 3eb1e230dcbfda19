"""Configs published for the authors' own code, read as transformers' native classes (CPU)."""

import json
from pathlib import Path

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve

# OpenGVLab/InternVL3-1B's config as its own InternVLChatConfig prints it (a public notebook that
# prints the model and its config), bundled as internvl3-1b; the same print shows the module tree
# checked below.
INTERNVL_CHAT = Path(__file__).parent.parent / "configs" / "internvl3-1b.json"


def test_internvl_chat_reads_as_native_internvl():
    spec = resolve(str(INTERNVL_CHAT))
    assert spec.adapter.family == "internvl"
    config = spec.adapter.tower_config(spec.config)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1024, 24, [448, 448], [14, 14])
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


def _variant(tmp_path, change):
    data = json.loads(INTERNVL_CHAT.read_text())
    change(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(ps_version="v1"), "ps_version 'v1'"),
    (lambda d: d["llm_config"].update(model_type="internlm2"), "no InternLM2 language model"),
    (lambda d: d.pop("llm_config"), "needs vision_config and llm_config"),
    (lambda d: d.update(model_type="deepseek_vl_v2"), "deepseek_vl_v2 config for their own code"),
    (lambda d: d.update(model_type="deepseek_vl_v2", architectures=["DeepseekOCR2ForCausalLM"]),
     "model_type deepseek_ocr2: deepseek-community/DeepSeek-OCR-2"),
    (lambda d: d.update(model_type="minicpmv"), "minicpmv config for their own code"),
    (lambda d: d.update(model_type="step3_vl"), "Step-3.7, model_type step3p7, is"),
    (lambda d: d.update(model_type="minicpmv4_6"), "MiniCPM-V 4.6 has no resampler"),
    (lambda d: d.update(model_type="ernie4_5_moe_vl"), "model_type ernie4_5_vl_moe"),
])
def test_forms_that_cannot_be_mapped_are_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(UsageError, match=message) as refused:
        resolve(_variant(tmp_path, change))
    assert "\n" not in str(refused.value)
