"""GLM-5.3-Flash (glm5_next) on its tiny config (CPU): the captured module against the model's own image
and video features, vLLM 0.33.0's layout (glm4_1v.py's, which Glm5NextForConditionalGeneration keeps),
and its names without a bundled config."""

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import STRATEGIES, ProfileRequest, prepare


def _tower_and_model():
    spec = resolve("tiny-glm5-next")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    model = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval().model
    tower.load_state_dict(model.visual.state_dict())
    return adapter, config, tower, model


def test_captured_module_equals_the_models_own_image_features():
    adapter, config, tower, model = _tower_and_model()
    inputs = adapter.make_inputs(
        tower, config, adapter.layout(config, 256, 4), "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        expected = torch.cat(model.get_image_features(inputs["hidden_states"], inputs["grid_thw"]).pooler_output)
    assert ours.shape == (256, 64) and torch.equal(ours, expected)


def test_captured_video_layout_equals_the_models_own_video_features():
    """With 2 frames per item vLLM captures videos of grid [2, m, ceil(floor(B / k) / 2) * m]; the tower
    takes them frame by frame, as the model's get_video_features hands them over."""
    adapter, config, tower, model = _tower_and_model()
    layout = adapter.vllm_layout(adapter.layout(config, 256, 4), config, 8)
    assert layout.grids == ((2, 2, 64),) * 4 and layout.tokens == 256
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        videos = torch.tensor(layout.grids)
        expected = torch.cat(model.get_video_features(inputs["hidden_states"], videos).pooler_output)
    assert torch.equal(ours, expected)


def test_layout_is_glm41vs_as_vllm_captures_it():
    """Glm5NextForConditionalGeneration overrides only get_encoder_cudagraph_config: k items of
    [1, m, floor(B / k) * m], the longest sequence fixed at B * m^2."""
    glm5, glm4v = resolve("tiny-glm5-next").adapter, resolve("tiny-glm4v").adapter
    assert glm5.vllm == glm4v.vllm and glm5.vllm.file == "model_executor/models/glm4_1v.py"
    setup = prepare(
        ProfileRequest(model="tiny-glm5-next", budgets=(1000, 2048), max_items=64, strategy=STRATEGIES["vllm"])
    )
    assert [(lay.budget, lay.items, lay.grids[0], lay.tokens, lay.max_seqlen) for lay in setup.layouts] == [
        (2048, 64, (1, 2, 64), 2048, 8192),
        (1000, 64, (1, 2, 30), 960, 4000),
    ]


def test_video_layout_is_glm41vs():
    """prepare_encoder_cudagraph_capture_inputs with 128 frames per batch and k = 64: 2 frames per item of
    ceil(floor(B / 64) / 2) tokens each."""
    setup = prepare(
        ProfileRequest(
            model="tiny-glm5-next",
            budgets=(1000, 2048),
            max_items=64,
            strategy=STRATEGIES["vllm"],
            max_frames_per_batch=128,
        )
    )
    assert [(lay.grids[0], lay.tokens) for lay in setup.layouts] == [((2, 2, 32), 2048), ((2, 2, 16), 1024)]


@pytest.mark.parametrize("name", ["GLM-5.3-Flash", "glm5-next"])
def test_its_names_point_to_the_hugging_face_id(name):
    with pytest.raises(UsageError, match=r"no bundled config: give its Hugging Face id \(zai-org/GLM-5.3-Flash\)"):
        resolve(name)
