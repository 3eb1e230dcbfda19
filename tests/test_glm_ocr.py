"""GLM-OCR on its tiny config (CPU): the captured module against the model's own image features,
vLLM's layout (GLM-4.1V's), and its name without a bundled config."""

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import ProfileRequest, prepare


def test_captured_module_equals_the_models_own_image_features():
    spec = resolve("tiny-glm-ocr")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    model = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval().model
    tower.load_state_dict(model.visual.state_dict())
    inputs = adapter.make_inputs(
        tower, config, adapter.layout(config, 256, 4), "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        expected = torch.cat(model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).pooler_output)
    assert ours.shape == (256, 64) and torch.equal(ours, expected)


def test_layout_is_glm41vs_as_vllm_captures_it():
    """GlmOcrForConditionalGeneration keeps glm4_1v.py's rules: k items of [1, m, floor(B / k) * m]."""
    glm_ocr, glm4v = resolve("tiny-glm-ocr").adapter, resolve("tiny-glm4v").adapter
    assert glm_ocr.vllm == glm4v.vllm and glm_ocr.vllm.file == "model_executor/models/glm4_1v.py"
    setup = prepare(ProfileRequest(model="tiny-glm-ocr", budgets=(1000, 2048), max_items=64, attn="sdpa"))
    assert [(layout.budget, layout.items, layout.grids[0], layout.tokens) for layout in setup.layouts] == [
        (2048, 64, (1, 2, 64), 2048),
        (1000, 64, (1, 2, 30), 960),
    ]


def test_its_name_points_to_the_hugging_face_id():
    with pytest.raises(UsageError, match=r"no bundled config: give its Hugging Face id \(zai-org/GLM-OCR\)"):
        resolve("GLM-OCR")
