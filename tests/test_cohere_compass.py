"""Cohere Compass (North-Micro-Vision) on its tiny config (CPU): the captured module against the
model's own image features, vLLM 0.33.0's layout (cohere_compass.py), and its names."""

import json

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import STRATEGIES, ProfileRequest, prepare


def _as_one(features):
    """transformers 5.24 splits each DeepStack level per image, 5.17 does not."""
    return torch.cat(features) if isinstance(features, (list, tuple)) else features


def test_captured_module_equals_the_models_own_image_features():
    """One tensor per budget, as vLLM's tower returns it: the merger's tokens, then each DeepStack level's."""
    spec = resolve("tiny-cohere-compass")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    model = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval().model
    tower.load_state_dict(model.visual.state_dict())
    layout = adapter.layout(config, 256, 4)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        theirs = model.get_image_features(inputs["hidden_states"], inputs["grid_thw"])
    expected = torch.cat(
        [_as_one(theirs.pooler_output), *(_as_one(level) for level in theirs.deepstack_features)], dim=1
    )
    assert ours.shape == (256, 64 * 3) and torch.equal(ours, expected)


def test_layout_is_vllms():
    """prepare_encoder_cudagraph_capture_inputs: k images of [1, m, ceil(B / k) * m], the longest
    sequence fixed at B * m^2; 64 is the smallest budget (get_encoder_cudagraph_budget_range)."""
    setup = prepare(ProfileRequest(model="tiny-cohere-compass", budgets=(1000, 2048), strategy=STRATEGIES["vllm"]))
    # k = min(2048 // 64, 1000) = 32; ceil(1000 / 32) = 32 tokens, where GLM-4.1V's floor would give 31.
    assert [(lay.budget, lay.items, lay.grids, lay.tokens, lay.max_seqlen) for lay in setup.layouts] == [
        (2048, 32, ((1, 2, 128),) * 32, 2048, 8192),
        (1000, 32, ((1, 2, 64),) * 32, 1024, 4000),
    ]
    assert setup.layouts[1].input_patches == 32 * 2 * 64
    assert setup.settings.max_items == 32
    assert setup.adapter.vllm.file == "model_executor/models/cohere_compass.py"


def test_auto_items_follow_the_smallest_budget_of_64():
    setup = prepare(ProfileRequest(model="tiny-cohere-compass", budgets=(64, 128, 256, 512, 1024, 2048, 4096, 8192)))
    assert setup.settings.max_items == 64  # min(8192 // 64, 64)
    assert setup.layouts[-1].grids == ((1, 2, 2),) * 64  # one 2 x 2 merge, one token, per image at 64


def test_video_is_not_captured():
    """get_encoder_cudagraph_config captures the image modality only."""
    with pytest.raises(UsageError, match="vLLM captures no video layout for cohere-compass"):
        prepare(
            ProfileRequest(
                model="tiny-cohere-compass", budgets=(1024,), strategy=STRATEGIES["vllm"], max_frames_per_batch=64
            )
        )


@pytest.mark.parametrize("name", ["North-Micro-Vision-Instruct", "north-micro-vision", "Cohere-Compass"])
def test_its_names_point_to_the_hugging_face_id(name):
    match = r"no bundled config: give its Hugging Face id \(CohereLabs/North-Micro-Vision-Instruct\)"
    with pytest.raises(UsageError, match=match):
        resolve(name)


def test_an_early_checkpoint_naming_its_vision_config_cohere_compass_is_read(tmp_path):
    """transformers (5.17 and later) reads a vision_config whose model_type is the whole model's."""
    config = json.loads(resolve("tiny-cohere-compass").source.read_text())
    config["vision_config"]["model_type"] = "cohere_compass"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    spec = resolve(str(path))
    assert spec.adapter.tower_config(spec.config).model_type == "cohere_compass_vision"
