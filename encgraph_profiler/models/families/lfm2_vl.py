"""LFM2-VL: a SigLIP2 NaFlex ViT over variable-size tiles (a learned position grid resized to each
tile), then the projector, which unshuffles factor x factor patches into one token and projects it
to the language model's width. The captured graph covers both, as vLLM's does.

vLLM's layout for budget B (lfm2_vl.py): tiles of factor x (t * factor) patches, t =
min(remaining tokens, min_image_tokens), until the budget is filled: ceil(B / min_image_tokens)
tiles, each but the last of min_image_tokens tokens. min_image_tokens comes from the model's image
processor settings (64 without them) and is also vLLM's smallest LFM2-VL budget.

Everything that depends on the tile shapes is computed outside the graph, as vLLM computes it: the
resized position embeddings (transformers 5.17 resizes them tile by tile on the host), the attention
mask of the padded last tile, and the index that gathers each token's factor x factor patches for
the projector (transformers drops padding slots with a boolean index). A CPU test checks the graph
against the model's own ``get_image_features``.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ...units import counted, is_whole_number
from ..base import Adapter, Layout, VllmSource
from ..grids import per_grid, staging

DEFAULT_MIN_IMAGE_TOKENS = 64  # transformers' Lfm2VlImageProcessor and vLLM


def _tower_module():
    """The vision model and the projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers import AutoModel
    from transformers.models.lfm2_vl.modeling_lfm2_vl import Lfm2VlMultiModalProjector

    class Lfm2VlTower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = AutoModel.from_config(config.vision_config, dtype=dtype, attn_implementation=attn)
            self.multi_modal_projector = Lfm2VlMultiModalProjector(config).to(dtype)

        def forward(self, pixel_values, position_embeddings, attention_mask, patch_index):
            vision = self.vision_tower
            hidden = vision.embeddings.patch_embedding(pixel_values) + position_embeddings
            hidden = vision.encoder(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state
            hidden = vision.post_layernorm(hidden)
            patches = hidden.reshape(-1, hidden.shape[-1])[patch_index]  # (factor, tokens * factor, width)
            features = self.multi_modal_projector(patches.unsqueeze(0))
            return features.reshape(-1, features.shape[-1])

    return Lfm2VlTower


def _lfm2_vl_early(data: dict[str, Any], source: str) -> dict[str, Any]:
    """LFM2-VL's first release (``lfm2-vl``, for Liquid AI's own code) onto transformers' ``lfm2_vl``:
    the same SigLIP2 NaFlex tower, pixel unshuffle and projector, which always had a layer norm.
    Its vision_feature_layer cut the tower (layers[:vision_feature_layer + 1] unless -1), and its
    config.json carried the image processor's token limits, read here as preprocessor fields."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict) or not isinstance(data.get("text_config"), dict):
        raise UsageError(f"{source}: an lfm2-vl config needs vision_config and text_config objects")
    native = {k: v for k, v in data.items() if k not in ("auto_map", "image_token_index", "vision_feature_layer")}
    native.update(model_type="lfm2_vl", projector_use_layernorm=True, vision_config=dict(vision))
    if "image_token_index" in data:
        native["image_token_id"] = data["image_token_index"]
    layer = data.get("vision_feature_layer", -1)
    if not is_whole_number(layer):
        raise UsageError(f"{source}: vision_feature_layer is {layer!r}; it must be a whole number (a layer index)")
    if layer != -1 and "num_hidden_layers" in vision:
        native["vision_config"]["num_hidden_layers"] = len(range(vision["num_hidden_layers"])[: layer + 1])
    native["preprocessor_config"] = {k: data[k] for k in ("min_image_tokens", "max_image_tokens") if k in data}
    return native


class Lfm2VlAdapter(Adapter):
    family = "lfm2-vl"
    model_types = ("lfm2_vl",)
    own_forms = {"lfm2-vl": _lfm2_vl_early}
    config_class_name = "transformers:Lfm2VlConfig"
    model_class_name = "transformers:Lfm2VlForConditionalGeneration"
    dynamic_resolution = False
    takes_max_items = False
    preprocessor_fields = ("min_image_tokens",)
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")

    def tower_config(self, data):
        config = self.full_config(data)  # the projector needs the language model's width
        config.min_image_tokens = self.preprocessor_int(data, "min_image_tokens", DEFAULT_MIN_IMAGE_TOKENS)
        return config

    def min_budget(self, config) -> int:
        return config.min_image_tokens

    def tower_module(self):
        return _tower_module()

    @staticmethod
    def tile_tokens(config, budget: int) -> list[int]:
        """Tokens of each tile vLLM captures for ``budget``."""
        full, rest = divmod(budget, config.min_image_tokens)
        return [config.min_image_tokens] * full + ([rest] if rest else [])

    def layout(self, config, budget: int, items: int) -> Layout:
        factor = config.downsample_factor
        tiles = self.tile_tokens(config, budget)
        patches = budget * factor * factor
        p = config.vision_config.patch_size
        return Layout(
            budget=budget,
            items=len(tiles),
            tokens=budget,
            input_patches=patches,
            meaning=f"{budget:,} tokens = {counted(len(tiles), 'tiles')} of up to "
            f"{factor * p}x{tiles[0] * factor * p} px, "
            f"{patches:,} ViT patches unshuffled {factor}x{factor}",
        )

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        factor, torch_dtype = config.downsample_factor, getattr(torch, dtype)
        tiles = self.tile_tokens(config, layout.budget)
        shapes = torch.tensor([[factor, t * factor] for t in tiles])
        longest = int(shapes.prod(-1).max())
        # Whether transformers needs the mask depends on its contents: predicting on meta tensors, it is built on
        # the host for one tile of each width, which decide it, and only its form, for every tile, goes to the
        # meta device.
        host, shown = (torch.device("cpu"), list(dict.fromkeys(tiles))) if device.type == "meta" else (device, tiles)
        valid = torch.arange(longest)[None] < torch.tensor(shown)[:, None] * factor * factor  # not padding
        embeddings = tower.vision_tower.embeddings
        table = embeddings.position_embedding.weight.reshape(
            embeddings.position_embedding_size, embeddings.position_embedding_size, -1
        )
        if table.is_meta:  # predicting: the resized table's shape alone
            positions = torch.empty(len(tiles), longest, table.shape[-1], device=device)
        else:
            with torch.no_grad():
                positions = embeddings.resize_positional_embeddings(
                    table.detach().float().cpu(), shapes, max_length=longest
                )
        patch_dim = embeddings.patch_embedding.in_features
        if device.type == "meta":  # predicting: the shape alone
            pixels = torch.empty(len(tiles), longest, patch_dim, dtype=torch_dtype, device=device)
        else:  # padding zeroed, as the image processor pads
            pixels = (torch.randn(len(tiles), longest, patch_dim, generator=generator) * valid[..., None]).to(
                device=device, dtype=torch_dtype
            )
        inputs_like = torch.empty(len(shown), longest, config.vision_config.hidden_size, dtype=torch_dtype, device=host)
        mask = create_bidirectional_mask(
            config=config.vision_config, inputs_embeds=inputs_like, attention_mask=valid.to(host)
        )
        if mask is not None and host != device:
            mask = torch.empty_strided((len(tiles), *mask.shape[1:]), mask.stride(), dtype=mask.dtype, device=device)

        def columns(tokens):
            """Token t of a tile of width w gathers rows dh and columns t * factor + dw of that tile's patches,
            as a (columns, factor) block; tiles sit side by side, as one grid factor patches high."""
            dh = torch.arange(factor)[:, None, None]
            column = torch.arange(tokens)[None, :, None] * factor + torch.arange(factor)[None, None, :]
            return (dh * tokens * factor + column).reshape(factor, -1).T

        index = per_grid(tiles, columns, staging(device), step=lambda _: longest).T.contiguous()
        return {
            "pixel_values": pixels,
            "position_embeddings": positions.to(device=device, dtype=torch_dtype),
            "attention_mask": mask,
            "patch_index": index.to(device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    vllm = VllmSource("model_executor/models/lfm2_vl.py", "Lfm2VLForConditionalGeneration")
    aliases = {"lfm2-vl": "lfm2-vl-1.6b"}


ADAPTERS = (Lfm2VlAdapter(),)
