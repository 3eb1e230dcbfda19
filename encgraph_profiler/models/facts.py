"""Parameter and KV-cache figures from a config alone: modules are built on the meta device."""

from __future__ import annotations

from ..errors import UsageError
from ..report import ModelFacts
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
    text = full.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    dtype_bytes = DTYPES[dtype]
    # Linear-attention layers (hybrid models such as Qwen3.5) keep a fixed state, not a KV cache.
    layers = sum(t != "linear_attention" for t in (getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers))
    kv = 2 * layers * text.num_key_value_heads * head_dim * dtype_bytes
    return ModelFacts(tower, total, total * dtype_bytes, kv, text.max_position_embeddings)
