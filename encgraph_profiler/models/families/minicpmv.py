"""MiniCPM-V 2.5, 2.6 and 4.0 (model_type ``minicpmv``) and MiniCPM-o 2.6 (``minicpmo``): a SigLIP
ViT with NaViT-style patch positions over each image slice, then a resampler whose query_num learned
queries make each slice query_num tokens. The authors publish configs for their own code and
transformers has no class for the resampler: encgraph builds the tower itself
(towers/minicpmv.py), the ViT from transformers' Idefics2 modules, its parameters named and shaped
as the checkpoints' ``vpm.*`` and ``resampler.*``. The captured graph covers both, as vLLM's does.

vLLM 0.33.0 reads the version from the config's ``version`` field (get_version_by_config; absent:
2.0 for a 2304-wide model of 64 queries, else 2.5; MiniCPM-o defaults to 2.6) and captures encoder
graphs for 2.5, 2.6 and 4.0 (MiniCPMV2_5, MiniCPMV2_6, MiniCPMV4_0, and MiniCPM-o 2.6 through
MiniCPMO2_6) by _MiniCPMVEncoderCudaGraphMixin (minicpmv.py); 2.0 and 4.5 do not opt in:

- Budgets (get_encoder_cudagraph_budget_range): from query_num, the tokens of one slice, doubling
  (v1/worker/encoder_cudagraph.py); k items per batch is min(max_budget // query_num, smallest budget).
- Capture axis (get_encoder_cudagraph_config, _mcpmv_patch_grid_keys): patch grids h x w of 32 x 32,
  32 x 64 and 64 x 32 where both sides fit the ViT's image_size // patch_size (70 for 980 px and
  14 px patches), then that full square grid. The manager captures budget after budget, largest
  first, each budget's grids in that order, all in one pool.
- Capture inputs (prepare_encoder_cudagraph_capture_inputs, _mcpmv_max_slices_cap): for budget B and
  grid h x w, S = max(1, min(B // query_num, k * (max_slice_num + 1))) slices of h * p x w * p pixels
  (max_slice_num from the config, 9 where it has none), an all-true patch mask of h * w and
  tgt_sizes of (h, w) each. For 2.6 and 4.0 with F video frames per batch the second bound is
  max(k, F) * (max_slice_num + 1) (``--as vllm --max-frames-per-batch``).
- The graph (encoder_cudagraph_forward): the ViT, given each slice's grid (2.5: none, the grid read
  from the mask), then the resampler; S * query_num tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ...units import counted, is_whole_number
from ..base import Adapter, Layout, Refusal, VllmSource, random_input
from ..grids import staging

CAPTURED = ((2, 5), (2, 6), (4, 0))  # MiniCPMV2_5, MiniCPMV2_6, MiniCPMV4_0
WITH_VIDEO = ((2, 6), (4, 0))  # the versions whose capture takes frames into account
PATCH_GRIDS = ((32, 32), (32, 64), (64, 32))  # _MINICPMV_BASE_PATCH_BUCKETS
VISION_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
)
# The language models vLLM builds (init_llm), with the fields their parameters and KV cache depend on.
LLAMA_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
)
LANGUAGE_MODELS = {
    (2, 5): ("LlamaConfig", "LlamaForCausalLM", (*LLAMA_FIELDS, "head_dim", "attention_bias", "mlp_bias")),
    (2, 6): ("Qwen2Config", "Qwen2ForCausalLM", LLAMA_FIELDS),
    (4, 0): ("LlamaConfig", "LlamaForCausalLM", (*LLAMA_FIELDS, "head_dim", "attention_bias", "mlp_bias")),
}
AUDIO_FIELDS = (
    "d_model",
    "encoder_layers",
    "encoder_attention_heads",
    "encoder_ffn_dim",
    "num_mel_bins",
    "max_source_positions",
    "activation_function",
)


@dataclass(frozen=True)
class MiniCPMVConfig:
    """What the tower and the layouts are built from, read from a minicpmv or minicpmo config.json."""

    version: tuple[int, ...]
    vision_config: Any  # transformers' Idefics2VisionConfig
    text_config: Any  # the language model's transformers config, for the whole-model size and KV cache
    hidden_size: int  # the language model's width: the resampler's
    query_num: int  # tokens per slice
    max_slice_num: int
    drop_vision_last_layer: bool
    audio_config: Any = None  # MiniCPM-o's Whisper encoder, for the whole-model size

    @property
    def grid_side(self) -> int:
        return self.vision_config.image_size // self.vision_config.patch_size


def version(data: dict[str, Any]) -> tuple[int, ...] | None:
    """The version as vLLM reads it: get_version_by_config for minicpmv, MiniCPMO.__new__ for
    minicpmo (the first two parts; 2.6 where there is none); None where it is no dotted number."""
    given = data.get("version")
    if given is None:
        if data.get("model_type") == "minicpmo":
            return (2, 6)
        return (2, 0) if (data.get("hidden_size"), data.get("query_num")) == (2304, 64) else (2, 5)
    parts = str(given).split(".")
    if not all(part.isdigit() for part in parts):
        return None
    numbers = tuple(int(part) for part in parts)
    return numbers[:2] if data.get("model_type") == "minicpmo" else numbers


def _not_captured(data: dict[str, Any], found: tuple[int, ...] | None) -> str | None:
    """Why vLLM captures no encoder graphs for this version, or None where it does."""
    name = "MiniCPM-o" if data.get("model_type") == "minicpmo" else "MiniCPM-V"
    if data.get("model_type") == "minicpmo" and found != (2, 6):
        shown = ".".join(map(str, found)) if found else repr(data.get("version"))
        return f"{name} {shown}: vLLM captures encoder graphs for MiniCPM-o 2.6 only (4.5 does not opt in)"
    if found in CAPTURED:
        return None
    if found == (2, 0):
        return (
            f"{name} 2.0 (version 2.0, or no version with a 2304-wide model of 64 queries: MiniCPM-V and MiniCPM-V 2): "
            "vLLM serves it without encoder CUDA graphs (MiniCPMV2_0 does not opt in), so there are none to measure"
        )
    if found == (4, 5):
        return (
            f"{name} 4.5: vLLM serves it without encoder CUDA graphs (MiniCPMV4_5, whose resampler also takes "
            "temporal positions, does not opt in), so there are none to measure"
        )
    shown = ".".join(map(str, found)) if found else repr(data.get("version"))
    return f"{name} version {shown}: vLLM serves versions 2.0, 2.5, 2.6, 4.0 and 4.5, and captures 2.5, 2.6 and 4.0"


def patch_grids(config: MiniCPMVConfig) -> tuple[tuple[int, int], ...]:
    """_mcpmv_patch_grid_keys: the base grids that fit the full grid side, then the full square grid."""
    side = config.grid_side
    fitting = tuple(grid for grid in PATCH_GRIDS if max(grid) <= side)
    return fitting if (side, side) in fitting else (*fitting, (side, side))


def slices(config: MiniCPMVConfig, budget: int, items: int, frames: int = 0) -> int:
    """_mcpmv_max_slices_cap: B // query_num slices, at most (max_slice_num + 1) per item (per frame
    where 2.6 and 4.0 take more frames than items), at least one."""
    per_item = config.max_slice_num + 1
    by_content = items * per_item
    if config.version in WITH_VIDEO and frames > 0:
        by_content = max(by_content, frames * per_item)
    return max(1, min(budget // max(1, config.query_num), by_content))


def _whole_model():
    """The whole model vLLM builds, for parameter counts: the tower, the language model, and
    MiniCPM-o's audio encoder with its projector (defined lazily: it needs torch)."""
    import torch
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from ..towers.minicpmv import MiniCPMVEncoder

    class MiniCPMVModel(torch.nn.Module):
        def __init__(self, config: MiniCPMVConfig):
            super().__init__()
            language_model = getattr(transformers, LANGUAGE_MODELS[config.version][1])
            self.tower = MiniCPMVEncoder(config, torch.bfloat16, "sdpa")
            self.llm = language_model._from_config(config.text_config)
            if config.audio_config is not None:  # MiniCPMOBaseModel.init_audio_module
                audio = config.audio_config
                self.apm = WhisperEncoder._from_config(audio)
                self.audio_projection_layer = torch.nn.Sequential(
                    torch.nn.Linear(audio.encoder_ffn_dim // 4, config.hidden_size),
                    torch.nn.ReLU(),
                    torch.nn.Linear(config.hidden_size, config.hidden_size),
                )

        @classmethod
        def _from_config(cls, config: MiniCPMVConfig):
            return cls(config)

    return MiniCPMVModel


class MiniCPMVAdapter(Adapter):
    family = "minicpmv"
    model_types = ("minicpmv", "minicpmo")
    vllm = VllmSource("model_executor/models/minicpmv.py", "_MiniCPMVEncoderCudaGraphMixin")
    aliases = {
        "minicpm-v": "minicpm-v-2-6",
        "minicpm-v-2.6": "minicpm-v-2-6",
        "minicpm-v2.6": "minicpm-v-2-6",
        "minicpm-llama3-v-2.5": "minicpm-llama3-v-2-5",
        "minicpm-v-2.5": "minicpm-llama3-v-2-5",
    }
    hub_ids = {
        "minicpm-v-4": "openbmb/MiniCPM-V-4",
        "minicpm-v-4.0": "openbmb/MiniCPM-V-4",
        "minicpm-o-2-6": "openbmb/MiniCPM-o-2_6",
        "minicpm-o-2.6": "openbmb/MiniCPM-o-2_6",
    }
    dynamic_resolution = False  # each graph takes slices of one patch grid
    captures_video = True  # 2.6 and 4.0; 2.5 captures images only (vllm_layout refuses frames for it)
    budget_major = True
    size_fields = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
    )

    def check_config(self, data: dict[str, Any], source: str) -> None:
        super().check_config(data, source)
        reason = _not_captured(data, version(data))
        if reason is not None:
            raise UsageError(f"{source}: {reason}")
        width, queries = data.get("hidden_size"), data.get("query_num")
        if not is_whole_number(width, least=128) or width % (width // 128):
            raise UsageError(
                f"{source}: hidden_size is {width!r}; the resampler runs hidden_size // 128 heads over it, so it must "
                "be a whole number of at least 128 that they divide"
            )
        if not is_whole_number(queries, least=1) or not is_whole_number(data.get("max_slice_num", 9), least=0):
            raise UsageError(f"{source}: query_num must be a whole number above 0 and max_slice_num one of 0 or more")
        image, patch = data["vision_config"]["image_size"], data["vision_config"]["patch_size"]
        if not is_whole_number(image) or not is_whole_number(patch) or image < patch:
            raise UsageError(
                f"{source}: vision_config image_size {image!r} and patch_size {patch!r} must be whole numbers, the "
                "image at least one patch: the ViT's patch grid is image_size // patch_size on a side"
            )

    def full_config(self, data: dict[str, Any]) -> MiniCPMVConfig:
        import transformers
        from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig

        found = version(data)
        assert found is not None  # check_config refused it otherwise
        text_class, _, text_fields = LANGUAGE_MODELS[found]
        audio = data.get("audio_config") if data.get("model_type") == "minicpmo" else None
        return MiniCPMVConfig(
            version=found,
            vision_config=self.read_config(
                Idefics2VisionConfig, {k: v for k, v in data["vision_config"].items() if k in VISION_FIELDS}
            ),
            text_config=self.read_config(
                getattr(transformers, text_class), {k: data[k] for k in text_fields if k in data}
            ),
            hidden_size=data["hidden_size"],
            query_num=data["query_num"],
            max_slice_num=data.get("max_slice_num", 9),
            drop_vision_last_layer=bool(data.get("drop_vision_last_layer", False)),
            audio_config=self._audio_config(audio) if isinstance(audio, dict) else None,
        )

    def _audio_config(self, audio: dict[str, Any]):
        from transformers import WhisperConfig

        return self.read_config(WhisperConfig, {k: v for k, v in audio.items() if k in AUDIO_FIELDS})

    def tower_config(self, data: dict[str, Any]) -> MiniCPMVConfig:
        return self.full_config(data)

    def full_model_class(self):
        return _whole_model()

    def build_tower(self, tower_config: MiniCPMVConfig, dtype: str, attn: str):
        import torch

        from ..towers.minicpmv import MiniCPMVEncoder

        return MiniCPMVEncoder(tower_config, getattr(torch, dtype), attn).eval()

    def min_budget(self, config: MiniCPMVConfig) -> int:
        return config.query_num  # one slice

    def graph_layouts(self, config: MiniCPMVConfig, budgets: tuple[int, ...], items: int) -> list[Layout]:
        """One graph per budget and patch grid."""
        return [self._layout(config, budget, grid, items, 0) for grid in patch_grids(config) for budget in budgets]

    def _layout(self, config: MiniCPMVConfig, budget: int, grid: tuple[int, int], items: int, frames: int) -> Layout:
        rows, cols = grid
        count, p = slices(config, budget, items, frames), config.vision_config.patch_size
        return Layout(
            budget=budget,
            items=count,
            tokens=count * config.query_num,
            input_patches=count * rows * cols,
            grids=((1, rows, cols),) * count,
            path=f"grid {rows}x{cols}",
            meaning=f"{budget:,} tokens = {counted(count, 'slices')} of {rows * p}x{cols * p} px, "
            f"{count * rows * cols:,} ViT patches resampled to {config.query_num} tokens each",
        )

    def vllm_layout(self, layout: Layout, config: MiniCPMVConfig, frames_per_batch: int) -> Layout:
        """With F frames per batch (2.6 and 4.0), up to max(k, F) * (max_slice_num + 1) slices: frames
        change a graph only where k * (max_slice_num + 1) held it below B // query_num."""
        if not frames_per_batch:
            return layout
        if config.version not in WITH_VIDEO:
            shown = ".".join(map(str, config.version))
            raise UsageError(
                f"--max-frames-per-batch: vLLM captures no video layout for MiniCPM-V {shown}, only images "
                "(from 2.6 on); drop it"
            )
        if layout.items >= max(1, layout.budget // max(1, config.query_num)):
            return layout
        _, rows, cols = layout.grids[0]
        items = layout.items // (config.max_slice_num + 1)
        return self._layout(config, layout.budget, (rows, cols), items, frames_per_batch)

    def make_inputs(self, tower, config: MiniCPMVConfig, layout: Layout, dtype: str, device, generator) -> dict:
        """_mcpmv_capture_inputs: the slices' pixels, an all-true patch mask, every grid (h, w)."""
        import torch

        _, rows, cols = layout.grids[0]
        p = config.vision_config.patch_size
        shape = (layout.items, config.vision_config.num_channels, rows * p, cols * p)
        grids = torch.tensor([rows, cols], dtype=torch.long).expand(layout.items, 2).contiguous()
        mask = torch.ones(layout.items, rows * cols, dtype=torch.bool, device=staging(device))
        return {
            "pixel_values": random_input(shape, dtype, device, generator),
            "patch_attention_mask": mask.to(device),
            "tgt_sizes": grids.to(device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        """vLLM's eager path (get_vision_hidden_states): each slice as the image processor hands it
        over, one row of its patches, (3, p, h * w * p); the same mask and grids."""
        pixels = inputs["pixel_values"]
        count, channels, height, width = pixels.shape
        p = tower.vpm.config.patch_size
        rows, cols = height // p, width // p
        strips = pixels.view(count, channels, rows, p, cols, p).permute(0, 1, 3, 2, 4, 5)
        strips = strips.reshape(count, channels, p, rows * cols * p)
        return (tower(strips, inputs["patch_attention_mask"], inputs["tgt_sizes"]),)


_WITHOUT_RESAMPLER = (
    "{model} has no resampler (a window-attention merger inside the ViT, then a merger), the part by "
    "whose queries vLLM lays out the encoder graphs of MiniCPM-V 2.5, 2.6 and 4.0; {engine}"
)
_NO_VLLM_GRAPHS = (
    "vLLM does not capture encoder CUDA graphs for it (its model there does not opt in), so there are none to measure"
)

ADAPTERS = (MiniCPMVAdapter(),)
REFUSALS = (
    Refusal(
        "minicpmv4_6", _WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.6", engine=_NO_VLLM_GRAPHS), ("minicpm-v-4-6",)
    ),
    Refusal(
        "minicpmv4_7", _WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.7", engine=_NO_VLLM_GRAPHS), ("minicpm-v-4-7",)
    ),
    Refusal(
        "minicpm_ocr",
        _WITHOUT_RESAMPLER.format(model="MiniCPM-OCR", engine="no engine layout for its encoder graphs is known"),
        ("minicpm-ocr",),
    ),
)
