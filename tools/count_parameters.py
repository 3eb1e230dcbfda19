"""Write configs/parameters.json: every bundled config's tower and whole-model parameter counts,
counted on the meta device, so that `encgraph models` can list them without importing torch.
tests/test_models.py recounts them and fails when this file is stale.

    python tools/count_parameters.py
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import bundled_names, parameters_file, resolve


def main() -> None:
    counts = {}
    for name in bundled_names(include_tiny=True):
        facts = model_facts(resolve(name), "bfloat16")
        counts[name] = {"tower_parameters": facts.tower_parameters, "total_parameters": facts.total_parameters}
    parameters_file().write_text(json.dumps(counts, indent=2) + "\n")
    print(f"{len(counts)} configs counted into {parameters_file()}")


if __name__ == "__main__":
    main()
