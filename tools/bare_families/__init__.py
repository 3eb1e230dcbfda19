"""The independent builders of tools/bare_ladder.py, one module per family: each declares MODEL_TYPES and
build(data, budgets, items, gen, attn="sdpa") -> (forward, runs, items), written against torch and
transformers only."""
