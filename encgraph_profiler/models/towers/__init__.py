"""Vision towers written for encgraph where transformers has no class, one module per tower, each
imported lazily by its family module (they need torch)."""
