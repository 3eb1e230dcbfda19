import json
import os
from pathlib import Path

# One CPU thread for torch's operators in the test process: the sweep tests fork cells from it, and
# a process forked after OpenMP has started its worker threads hangs at its next parallel operator.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def recorded_report_path() -> Path:
    """The real report committed from a profile run on an H100."""
    paths = sorted(EXAMPLES.glob("qwen2-vl-7b.*.json"))
    assert paths, "examples/qwen2-vl-7b.<gpu>.json is missing"
    return paths[0]


@pytest.fixture
def recorded_report_data(recorded_report_path) -> dict:
    return json.loads(recorded_report_path.read_text())
