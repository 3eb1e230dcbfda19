"""Step-3.7 (transformers' ``step3p7``) and Step3-VL-10B (below): a ViT with 2-D rotary attention
whose two stride-2 convolutions shrink each image's patch grid fourfold per side, then the
projector. vLLM captures both with Step3-VL's encoder-graph paths (step3p7.py and step_vl.py build on
step3_vl.py), two sets of budget graphs in the one pool:

- ``global``: min(B // g, k) whole images of image_size px (728), g the tokens one image makes
  (169: a 52 x 52 patch grid, 26 x 26, then 13 x 13);
- ``local``: B // c crops of 504 px, c the tokens one crop makes (81: 36 x 36, 18 x 18, 9 x 9), for
  budgets of at least one crop; k does not apply.

Each path captures vLLM's own ladder (its encoder graph manager): from one item of that path (g
or c tokens) doubling up to the largest budget, plus the largest; the budgets between do not apply
to these paths. Paths are captured in the order the model declares them, global first, each largest
first. Each graph covers the vision model and the projector; the rotary embedding of the grid is
computed outside the graph.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..base import Layout, VllmSource, random_input
from ..layouts.two_path import TwoPathAdapter

LOCAL_CROP = 504  # the crop vLLM's Step3-VL local path captures, and the image processor's patch_size


def _tower_module():
    """Step-3.7's vision model and projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.step3p7.modeling_step3p7 import Step3p7VisionModel

    class Step3p7Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_model = Step3p7VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.multi_modal_projector = torch.nn.Linear(
                config.vision_config.hidden_size * 4,
                config.text_config.hidden_size,
                bias=config.projector_bias,
                dtype=dtype,
            )

        def forward(self, pixel_values, cos, sin):
            """Step3p7VisionModel's forward with the grid's rotary embedding given, then the projector."""
            vision = self.vision_model
            batch, _, height, width = pixel_values.shape
            rows, cols = height // vision.embeddings.patch_size, width // vision.embeddings.patch_size
            hidden = vision.pre_layernorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
            for layer in vision.layers:
                hidden = layer(hidden, position_embeddings=(cos, sin))
            hidden = hidden.permute(0, 2, 1).view(batch, hidden.shape[-1], rows, cols)
            hidden = vision.downsampler2(vision.downsampler1(hidden))
            return self.multi_modal_projector(hidden.flatten(2).permute(0, 2, 1))

    return Step3p7Tower


def _downsampled(side: int) -> int:
    """A grid side after the two downsampling convolutions (kernel 3, stride 2, padding 1)."""
    for _ in range(2):
        side = (side + 2 - 3) // 2 + 1
    return side


class Step3p7Adapter(TwoPathAdapter):
    family = "step3p7"
    model_types = ("step3p7",)
    vllm = VllmSource("model_executor/models/step3_vl.py", "Step3VLForConditionalGeneration")
    hub_ids = {
        "step-3.7": "stepfun-ai/Step-3.7-Flash",
        "step-3.7-flash": "stepfun-ai/Step-3.7-Flash",
        "step3p7": "stepfun-ai/Step-3.7-Flash",
    }
    config_class_name = "transformers:Step3p7Config"
    model_class_name = "transformers:Step3p7ForConditionalGeneration"
    size_fields = ("image_size", "patch_size")

    def tower_module(self):
        return _tower_module()

    def view_size(self, config, path: str) -> int:
        return config.vision_config.image_size if path == "global" else LOCAL_CROP

    def patch_size(self, config) -> int:
        return config.vision_config.patch_size

    def tokens(self, config, size: int) -> int:
        return _downsampled(size // self.patch_size(config)) ** 2

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.models.step3p7.modeling_step3p7 import Step3p7VisionRotaryEmbedding
        from transformers.vision_utils import get_vision_position_ids

        vision = config.vision_config
        size = self.view_size(config, layout.path)
        side = size // self.patch_size(config)
        positions = get_vision_position_ids(torch.tensor([[1, side, side]]), spatial_merge_size=1)
        # float32, as the model computes it; the first argument only says where
        cos, sin = Step3p7VisionRotaryEmbedding(vision)(torch.empty(0), positions)
        return {
            "pixel_values": random_input((layout.items, vision.num_channels, size, size), dtype, device, generator),
            "cos": cos.to(device),
            "sin": sin.to(device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        """Step3p7Model.get_image_features' path: the vision model as transformers runs it."""
        return (tower.multi_modal_projector(tower.vision_model(inputs["pixel_values"]).last_hidden_state),)


# Step3-VL's vision settings that transformers' Step-3.7 vision model is built with, and the value
# it has for each: no class token, a layer norm before the blocks and none after them, a learned
# absolute position table and 2-D rotary attention. (StepFun's config class spells the class
# token's flag "ues_cls_token"; vLLM's Perception Encoder reads "use_cls_token".)
_STEP3_VL_BUILT = {
    "ues_cls_token": False,
    "use_cls_token": False,
    "use_ln_pre": True,
    "use_ln_post": False,
    "use_abs_posemb": True,
    "use_rope2d": True,
}


def _step3_vl_model():
    """Step3-VL's whole model for parameter counts: Step-3.7's vision model and projector before a
    Qwen3 language model (defined lazily: it needs torch)."""
    import torch
    from transformers import Qwen3ForCausalLM

    tower = _tower_module()

    class Step3VLModel(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.tower = tower(config, torch.bfloat16, "sdpa")
            self.language_model = Qwen3ForCausalLM._from_config(config.text_config)

        @classmethod
        def _from_config(cls, config):
            return cls(config)

    return Step3VLModel


class Step3VLAdapter(Step3p7Adapter):
    """Step3-VL-10B in StepFun's own ``step_robotics`` form (for its own code; vLLM's step_vl.py):
    Step-3.7's vision model and projector (a Perception Encoder sized by width, layers and heads,
    the same two stride-2 convolutions, a linear projector) before a Qwen3 language model. vLLM's
    StepVLForConditionalGeneration builds on step3_vl.py, so its graphs take the same two paths
    as Step-3.7's. transformers has no class for the whole model: the tower is built with its
    Step-3.7 classes, and the language model, for parameter counts and the KV cache, with Qwen3's."""

    family = "step3-vl"
    model_types = ("step_robotics",)
    hub_ids = {"step3-vl": "stepfun-ai/Step3-VL-10B", "step3-vl-10b": "stepfun-ai/Step3-VL-10B"}
    model_class_name = ""

    def check_config(self, data: dict[str, Any], source: str) -> None:
        super().check_config(data, source)
        vision = data["vision_config"]
        for flag, built in _STEP3_VL_BUILT.items():
            if vision.get(flag, built) != built:
                raise UsageError(
                    f"{source}: vision_config {flag} {vision[flag]!r} is built only by the authors' own code; "
                    f"transformers' Step-3.7 vision model, which encgraph builds, has {flag} {built}"
                )
        text = data.get("text_config")
        if not isinstance(text, dict) or text.get("model_type", "qwen3") != "qwen3":
            kind = text.get("model_type") if isinstance(text, dict) else None
            raise UsageError(
                f"{source}: a step_robotics config needs a Qwen3 text_config (Step3-VL-10B's); "
                f"got {'none' if kind is None else repr(kind)}"
            )

    def full_config(self, data: dict[str, Any]):
        from transformers import Qwen3Config

        config = super().full_config({**data, "text_config": None})
        config.text_config = self.read_config(
            Qwen3Config, {k: v for k, v in data["text_config"].items() if k != "model_type"}
        )
        return config

    def full_model_class(self):
        return _step3_vl_model()


ADAPTERS = (Step3p7Adapter(), Step3VLAdapter())
