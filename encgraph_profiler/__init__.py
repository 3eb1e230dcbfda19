"""encgraph: how much GPU memory a vision encoder's CUDA graphs hold, budget by budget."""

__version__ = "0.1.0"
