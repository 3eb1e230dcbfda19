"""Parameter and KV-cache figures from a config alone: modules are built on the meta device."""

from __future__ import annotations

from ..errors import UsageError
from ..schema import ModelFacts
from .base import DTYPES
from .registry import ModelSpec


def _count_parameters(build, what: str) -> int:
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as err:
        raise UsageError(f"cannot build the {what} from this config: {str(err).splitlines()[0]}") from None
    return sum(p.numel() for p in model.parameters())


def model_facts(spec: ModelSpec, dtype: str) -> ModelFacts:
    adapter = spec.adapter
    full = adapter.full_config(spec.config)
    tower_config = adapter.tower_config(spec.config)
    tower = _count_parameters(lambda: adapter.build_tower(tower_config, dtype, "sdpa"), "vision tower")
    if not adapter.has_language_model:
        return ModelFacts(tower, None, None, None, None)
    total = _count_parameters(lambda: adapter.full_model_class()._from_config(full), "model")
    dtype_bytes = DTYPES[dtype]
    kv = _kv_elements_per_token(full.text_config) * dtype_bytes
    return ModelFacts(tower, total, total * dtype_bytes, kv, full.text_config.max_position_embeddings)


# Layer kinds that keep a fixed-size state instead of a per-token cache.
_NO_KV_LAYERS = frozenset({"linear_attention", "conv", "mamba", "recurrent"})


def _kv_elements_per_token(text) -> int:
    """Cache elements one token adds, over the layers that keep their own: keys and values, or with
    multi-head latent attention (DeepSeek-V3 language models) one compressed latent and one rotary
    key. Configs whose layers differ (Gemma 4) give each layer's heads and head size; linear-attention
    (Qwen3.5) and convolution (LFM2) layers keep a fixed state, and layers that share an earlier layer's cache
    (num_kv_shared_layers, the last ones) keep none."""
    types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    per_layer = getattr(text, "per_layer_config", None)
    own = len(types) - (getattr(text, "num_kv_shared_layers", 0) or 0)
    total = 0
    for index, kind in enumerate(types[:own]):
        if kind in _NO_KV_LAYERS:
            continue
        layer = per_layer[index] if per_layer is not None else text
        if getattr(layer, "kv_lora_rank", None):
            total += layer.kv_lora_rank + layer.qk_rope_head_dim
            continue
        head_dim = getattr(layer, "head_dim", None) or layer.hidden_size // layer.num_attention_heads
        total += 2 * layer.num_key_value_heads * head_dim
    return total
