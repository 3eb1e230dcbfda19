"""Reports derived from the committed real one, for tests that need a changed figure."""

import copy
import json

MiB = 1024**2


def grow_largest_pool(data: dict, fraction: float, extra: int | None = None) -> dict:
    """The largest budget's pool grew by ``fraction`` (or ``extra`` bytes): its budget row, the
    reserved bytes after every capture (the largest is captured first), the encoder pool and the total."""
    data = copy.deepcopy(data)
    largest = max(data["budgets"], key=lambda b: b["budget"])
    extra = int(largest["pool_reserved_bytes"] * fraction) if extra is None else extra
    for b in data["budgets"]:
        b["pool_reserved_bytes"] += extra
    largest["pool_growth_bytes"] += extra
    pool = next(p for p in data["pools"] if p["pool"] == "encoder_graphs")
    pool["reserved_bytes"] += extra
    pool["parts"]["scratch"] += extra
    if data.get("total_bytes") is not None:  # null in a prediction
        data["total_bytes"] += extra
    return data


def write(path, data: dict):
    path.write_text(json.dumps(data))
    return path


def request(model: str, budgets, pool=None, order=None, capture=None, **kwargs):
    """A ProfileRequest, its strategy given as the words the CLI takes."""
    from encgraph_profiler.request import ProfileRequest, parse_strategy

    return ProfileRequest(
        model=model, budgets=tuple(budgets), strategy=parse_strategy(None, pool, order, capture), **kwargs
    )


def measured(req, device=None, progress=None):
    """``req`` prepared and profiled on ``device`` (the real GPU by default)."""
    from encgraph_profiler.capture import measure
    from encgraph_profiler.request import prepare

    return measure(prepare(req), progress, device)
