"""A run's report, assembled the same way for a measurement (``capture``) and a prediction
(``predict``): the settings, model facts and graph counts the preparation decided, the provenance of
the run, and what it measured or predicted."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from . import __version__
from .request import Prepared
from .schema import SCHEMA_VERSION, Provenance, Report


def provenance(
    gpu_name: str,
    gpu_total_bytes: int,
    driver: str | None,
    cuda: str | None,
    allocator_conf: str,
    visible_devices: str | None = None,
) -> Provenance:
    """Where a report comes from: the GPU (or the one predicted for), the library versions, and the
    vLLM release whose encoder-graph rules encgraph follows."""
    import torch
    import transformers

    from .models.census import load

    return Provenance(
        gpu_name=gpu_name,
        gpu_total_bytes=gpu_total_bytes,
        driver=driver,
        cuda=cuda,
        torch=torch.__version__,
        transformers=transformers.__version__,
        encgraph=__version__,
        allocator_conf=allocator_conf,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        visible_devices=visible_devices,
        vllm_rules=load().vllm_version,
    )


def visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES of this run: which GPU of the host it used."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def assemble(setup: Prepared, origin: Provenance, **measured: Any) -> Report:
    """The report of ``setup``'s run: ``measured`` holds the budgets, pools and the rest of what the
    run found (the fields of ``Report`` that the preparation does not decide)."""
    warnings = tuple(setup.notes) + tuple(measured.pop("warnings", ()))
    return Report(
        schema_version=SCHEMA_VERSION,
        provenance=origin,
        settings=setup.settings,
        model=setup.facts,
        graph_counts=setup.graph_counts,
        warnings=warnings,
        **measured,
    )
