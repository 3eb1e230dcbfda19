"""Predicting the pools without a GPU: the meta-tensor trace against real recorded captures, and
the predicted pools against the pools those runs measured (tests/data/memory_snapshot)."""

import gzip
import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import grow_largest_pool, request
from typer.testing import CliRunner

from encgraph_profiler.allocator_model import parse_allocator_conf, round_size
from encgraph_profiler.cli import build_app
from encgraph_profiler.models.base import Layout
from encgraph_profiler.predict import predict
from encgraph_profiler.request import ProfileRequest, Strategy, prepare
from encgraph_profiler.schema import Capture, Order, Pool
from encgraph_profiler.trace import trace

app = build_app()

DATA = Path(__file__).parent / "data" / "memory_snapshot"
RUNS = json.loads((DATA / "runs.json").read_text())
SMALL = 1 << 20


def _snapshot(name):
    return pickle.loads(gzip.decompress((DATA / name).read_bytes()))


def _setup(run):
    """The run's request prepared; a run recorded with an earlier layout (Kimi-K2.5's before vLLM
    0.33.0's rules, its video chunks among them) is given the layouts it recorded instead."""
    recorded = run.get("layouts")
    setup = prepare(
        request(
            run["model"],
            run["budgets"],
            attn=run["attn"],
            max_items=run.get("max_items"),
            capture=run.get("capture", "plain"),
            max_frames_per_batch=0 if recorded else run.get("max_frames_per_batch", 0),
        )
    )
    return replace(setup, layouts=tuple(map(_recorded_layout, recorded))) if recorded else setup


def _recorded_layout(entry):
    t, h, w = entry["grid"]
    return Layout(
        budget=entry["budget"],
        items=entry["items"],
        tokens=entry["tokens"],
        input_patches=entry["items"] * t * h * w,
        grids=((t, h, w),) * entry["items"],
        max_seqlen=entry["max_seqlen"],
    )


def _graph_pool_bytes(snapshot):
    return sum(s["total_size"] for s in snapshot["segments"] if tuple(s["segment_pool_id"]) != (0, 0))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_predicted_pool_equals_the_recorded_runs(name):
    """The pool the run measured (its graph pools' segments in the recorded snapshot), predicted to
    the byte from the model's config alone."""
    run, snapshot = RUNS[name], _snapshot(name)
    conf = snapshot["allocator_settings"]["PYTORCH_CUDA_ALLOC_CONF"]
    assert conf == run.get("allocator_conf", "")
    predicted = predict(_setup(run), parse_allocator_conf(conf))
    assert predicted[-1].pool_reserved_bytes == _graph_pool_bytes(snapshot)
    assert predicted[-1].pool_segments == sum(tuple(s["segment_pool_id"]) != (0, 0) for s in snapshot["segments"])


# Gemma 3 is left out: in its projector's RMS norm, CUDA's mean over the last dimension stages
# partial sums in a buffer of twice the input (9,437,184 bytes at 1024) that the trace does not
# make; it comes and goes while the pool has room, so the predicted pool is still exact.
@pytest.mark.parametrize(
    "name",
    [
        "qwen2-vl-7b.1024-8192.pickle.gz",
        "qwen3-vl-8b.1024-2048.pickle.gz",
        "llama-4-scout-17b-16e.1024-2048.pickle.gz",
        "siglip-so400m-patch14-384.1024-8192.pickle.gz",
        "clip-vit-large-patch14-336.1024-8192.pickle.gz",
    ],
)
def test_meta_trace_makes_the_recorded_large_requests_in_order(name):
    """Every request above 1 MiB (the large pool, which holds nearly all of a pool) and every free
    of one, in the order the recorded capture of the smallest budget made them."""
    run, snapshot = RUNS[name], _snapshot(name)
    budget = min(run["budgets"])
    private = [
        (s["address"], s["address"] + s["total_size"])
        for s in snapshot["segments"]
        if tuple(s["segment_pool_id"]) != (0, 0)
    ]
    live, recorded = set(), []
    for event in snapshot["device_traces"][0]:
        if event.get("category") != f"budget={budget}":
            continue
        if event["action"] == "alloc" and any(lo <= event["addr"] < hi for lo, hi in private):
            live.add(event["addr"])
            recorded.append(("alloc", round_size(event["size"])))
        elif event["action"] == "free_completed" and event["addr"] in live:
            live.discard(event["addr"])
            recorded.append(("free", round_size(event["size"])))
    setup = _setup(run)
    adapter, layout = setup.spec.adapter, next(layout for layout in setup.layouts if layout.budget == budget)
    with torch.device("meta"):
        tower = adapter.build_tower(setup.tower_config, setup.settings.dtype, setup.settings.attn)
    inputs = adapter.make_inputs(
        tower, setup.tower_config, layout, setup.settings.dtype, torch.device("meta"), torch.Generator()
    )
    with torch.inference_mode():
        events, _ = trace(lambda: adapter.forward(tower, inputs))
    sizes, traced = {}, []
    for kind, key, size in events:
        if kind == "alloc":
            sizes[key] = round_size(size)
        traced.append((kind, sizes[key] if kind == "alloc" else sizes.pop(key)))
    large = lambda seq: [e for e in seq if e[1] > SMALL]  # noqa: E731
    assert large(traced) == large(recorded)


def test_patch_convolution_makes_the_probed_requests():
    """Every shape probed on an H100 (tools/probe_conv_workspace.py): the trace's requests for one
    patch convolution, its output then any workspace, equal the ones cuDNN made."""
    lines = (Path(__file__).parent / "data" / "conv_workspace.h100.jsonl").read_text().splitlines()
    probes = [json.loads(line) for line in lines[1:]]
    assert len(probes) > 150
    for probe in probes:
        size, patch, batch = probe["size"], probe["patch"], probe["batch"]
        conv = torch.nn.Conv2d(3, probe["channels"], patch, stride=patch, device="meta", dtype=torch.bfloat16)
        pixels = torch.empty(batch, 3, size, size, device="meta", dtype=torch.bfloat16)
        with torch.inference_mode():
            events, _ = trace(lambda conv=conv, pixels=pixels: (conv(pixels),))
        assert [n for kind, _, n in events if kind == "alloc"] == probe["requests"], probe


def test_patch_convolution_of_a_28_by_28_grid_takes_the_workspace():
    """DeepSeek-VL2's 384-pixel tiles padded to 392 (28 x 28 patches of 14): the workspace of grids up
    to 28 x 28, which its H100 captures (encgraph's and the independent ladder's) matched to the byte."""
    conv = torch.nn.Conv2d(3, 1152, 14, stride=14, device="meta", dtype=torch.bfloat16)
    pixels = torch.empty(42, 3, 392, 392, device="meta", dtype=torch.bfloat16)
    with torch.inference_mode():
        events, _ = trace(lambda: (conv(pixels),))
    assert [n for kind, _, n in events if kind == "alloc"] == [42 * 1152 * 28 * 28 * 2, 182_741_008]


def test_einsum_is_traced_as_the_operators_it_runs_as():
    """Under inference_mode einsum reaches the trace whole; on CUDA it copies a strided operand before
    its bmm (DeepSeek-OCR's relative-position tables): the copy is traced, then freed."""
    qkv = torch.empty(2, 64, 3, 12, 64, device="meta", dtype=torch.bfloat16).permute(2, 0, 3, 1, 4)
    table = torch.empty(8, 8, 64, device="meta", dtype=torch.bfloat16)
    with torch.inference_mode():
        events, _ = trace(lambda: (torch.einsum("bnhwc,hkc->bnhwk", qkv[0].reshape(2, 12, 8, 8, 64), table),))
    allocs = [n for kind, _, n in events if kind == "alloc"]
    assert allocs[:2] == [196_608, 24_576] and [kind for kind, _, _ in events].count("free") >= 1


def test_repeated_operators_get_the_results_their_kernels_give():
    """An operator run again on meta tensors of the same shapes, strides and types has its results
    made anew instead of by its meta kernel: the same layouts and the same requests each time. One
    that hands back an argument (type_as to its own type) is run each time, and so is one given host
    tensors, whose values it may read (a mask's count of True) or the forward may."""
    x = torch.empty(8, 4, device="meta", dtype=torch.bfloat16).t()
    bound = torch.empty((), device="meta", dtype=torch.bfloat16)
    clamped, typed, masked, lengths = [], [], [], []

    def run():
        for _ in range(3):
            clamped.append(torch.clamp(x, bound, bound))
            typed.append(x.type_as(bound))
        for mask in ([True, False, True, True], [False, False, True, False]):
            masked.append(x[:, 0][torch.tensor(mask)].shape)
        return (torch.cat(clamped),)

    events, _ = trace(run)
    kernel = torch.clamp(x, bound, bound)
    assert [(c.shape, c.stride(), c.dtype) for c in clamped] == [(kernel.shape, kernel.stride(), kernel.dtype)] * 3
    assert all(t is x for t in typed) and masked == [(3,), (1,)]
    assert [n for kind, _, n in events if kind == "alloc"] == [64, 64, 64, 6, 2, 192]
    host = torch.tensor([0, 3, 7])

    def read_on_the_host():
        lengths.extend((host[1:] - host[:-1]).tolist() for _ in range(3))
        return ()

    trace(read_on_the_host)
    assert lengths == [[3, 4]] * 3


def test_sdpa_makes_the_probed_requests():
    """Every shape probed on an H100 (tools/probe_masked_sdpa.py), with Gemma 4's boolean padding
    mask and without one: the trace's requests and frees for one sdpa call, in order, equal the
    ones the GPU made."""
    lines = (Path(__file__).parent / "data" / "masked_sdpa.h100.jsonl").read_text().splitlines()
    probes = [json.loads(line) for line in lines[1:]]
    assert {p["mask"] for p in probes} == {"bool", "none"}
    for probe in probes:
        batch, heads, tokens, size = probe["batch"], probe["heads"], probe["tokens"], probe["head_size"]
        q, k, v = (
            torch.empty(batch, tokens, heads, size, device="meta", dtype=torch.bfloat16).transpose(1, 2)
            for _ in range(3)
        )
        mask = (
            torch.empty(batch, 1, tokens, tokens, device="meta", dtype=torch.bool) if probe["mask"] == "bool" else None
        )
        with torch.inference_mode():
            events, _ = trace(
                lambda q=q, k=k, v=v, mask=mask: (
                    torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0),
                )
            )
        sizes, traced = {}, []
        for kind, key, n in events:
            if kind == "alloc":
                sizes[key] = n
            traced.append((kind, sizes[key] if kind == "alloc" else sizes.pop(key)))
        recorded = [("alloc", e["alloc"]) if "alloc" in e else ("free", e["size"]) for e in probe["events"]]
        assert traced == recorded, probe


def test_per_graph_and_smallest_first_follow_the_strategy():
    """One pool per graph adds up to the budgets predicted alone; smallest first grows at every
    capture and ends above the largest budget alone."""
    base = ProfileRequest(model="qwen2-vl-2b", budgets=(1024, 2048), max_items=8, attn="sdpa")
    per_graph = predict(prepare(ProfileRequest(**{**base.__dict__, "strategy": Strategy(pool=Pool.PER_GRAPH)})))
    alone = [
        predict(prepare(ProfileRequest(**{**base.__dict__, "budgets": (b,)})))[-1].pool_reserved_bytes
        for b in (2048, 1024)
    ]
    assert [p.pool_growth_bytes for p in per_graph] == alone
    smallest = predict(prepare(ProfileRequest(**{**base.__dict__, "strategy": Strategy(order=Order.SMALLEST_FIRST)})))
    assert [p.budget for p in smallest] == [1024, 2048] and all(p.pool_growth_bytes > 0 for p in smallest)


def test_cli_writes_a_predicted_report_that_check_and_plan_read(tmp_path, recorded_report_path):
    from encgraph_profiler.report_io import load

    runner = CliRunner()
    path = tmp_path / "p.json"
    result = runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl", "--budgets", "64,128", "--json", str(path)])
    assert result.exit_code == 0, result.output
    report = load(path)
    assert report.predicted and report.settings.attn == "varlen"  # auto, for a 9.0 GPU
    assert [b.replay_matches_eager for b in report.budgets] == [None, None] and report.complete
    assert "Encoder graphs would hold (predicted)" in result.output
    # A gate between predictions works on a CPU; a prediction and a measurement are not compared.
    grown = tmp_path / "grown.json"
    grown.write_text(json.dumps(grow_largest_pool(json.loads(path.read_text()), 0, extra=64 << 20)))
    assert runner.invoke(app, ["check", str(path), str(path)]).exit_code == 0
    assert runner.invoke(app, ["check", str(path), str(grown)]).exit_code == 1
    mixed = runner.invoke(app, ["check", str(recorded_report_path), str(path)])
    assert mixed.exit_code != 0 and "predicted" in mixed.output
    # A plan needs the GPU named: a prediction is for none in particular.
    assert "give --gpu" in runner.invoke(app, ["plan", "--from", str(path)]).output
    planned = runner.invoke(app, ["plan", "--from", str(path), "--gpu", "H100-80GB", "--format", "json"])
    terms = {t["name"]: t for t in json.loads(planned.stdout)["terms"]}
    assert (
        terms["encoder graphs"]["source"] == "predicted"
        and terms["encoder graphs"]["bytes"] == report.pool("encoder_graphs").reserved_bytes
    )


def test_cli_json_that_cannot_be_written_after_the_prediction_falls_back(tmp_path, monkeypatch):
    """The folder --json points to goes away while predicting: the report goes to a fallback file
    named in a warning, the table is still shown, and the exit code says so (8)."""
    from encgraph_profiler import predict as predict_module
    from encgraph_profiler.report_io import load

    target = tmp_path / "gone" / "p.json"
    target.parent.mkdir()
    real = predict_module.predicted_report

    def then_remove_the_folder(setup, capability):
        report = real(setup, capability)
        target.parent.rmdir()
        return report

    monkeypatch.setattr(predict_module, "predicted_report", then_remove_the_folder)
    monkeypatch.chdir(tmp_path)
    args = ["predict", "--model", "tiny-qwen2-vl", "--budgets", "64,128", "--json", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 8, result.output
    (fallback,) = tmp_path.glob("encgraph-report-*.json")
    output = " ".join(result.output.split())
    assert f"could not write {target}" in output and f"the report is in {fallback}" in output
    assert load(fallback).predicted and [b.budget for b in load(fallback).budgets] == [64, 128]
    assert "Encoder graphs would hold (predicted)" in result.output


def test_plan_model_without_a_gpu_predicts_and_says_so(monkeypatch):
    from encgraph_profiler import nvml

    monkeypatch.setattr(nvml, "device_count", lambda: 0)
    result = CliRunner().invoke(app, ["plan", "--model", "tiny-qwen2-vl", "--budgets", "64,128", "--gpu", "H100-80GB"])
    assert result.exit_code == 0, result.output
    assert "no GPU here: predicting" in result.output and "predicted without a GPU" in result.output


def test_cli_refuses_bad_input(monkeypatch):
    runner = CliRunner()
    for conf in (
        "expandable_segments:True,roundup_power2_divisions:[256:1,>:4]",
        "backend:cudaMallocAsync",
        "expandable_segments:yes",
    ):
        monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
        refused = runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl"])
        assert refused.exit_code == 3 and "predict models PyTorch's native allocator" in refused.output, conf
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    taken = runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl", "--budgets", "64", "--format", "json"])
    assert taken.exit_code == 0 and json.loads(taken.stdout)["provenance"]["allocator_conf"] == "max_split_size_mb:128"
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    assert runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl", "--gpu-capability", "nine"]).exit_code == 2
    clash = runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl", "--as", "vllm", "--pool", "per-graph"])
    assert clash.exit_code == 2 and "--as vllm means --pool shared" in clash.output
    old = runner.invoke(
        app, ["predict", "--model", "tiny-qwen2-vl", "--budgets", "64", "--gpu-capability", "7.5", "--format", "json"]
    )
    assert old.exit_code == 0 and json.loads(old.stdout)["settings"]["attn"] == "sdpa"
    assert "compute capability 7.5 with kernel rules found on an H100" in json.loads(old.stdout)["warnings"][0]
    h100 = runner.invoke(app, ["predict", "--model", "tiny-qwen2-vl", "--budgets", "64", "--format", "json"])
    assert h100.exit_code == 0 and json.loads(h100.stdout)["warnings"] == []


def test_vllm_capture_frees_each_graphs_outputs_in_its_pool():
    """Captured as vLLM captures, outputs are copied out and their blocks freed in the pool (later
    captures may reuse them); captured plainly, every graph's outputs stay in use."""
    base = ProfileRequest(model="qwen2-vl-2b", budgets=(1024, 2048), max_items=8, attn="sdpa")
    plain = predict(prepare(base))
    vllm = predict(prepare(ProfileRequest(**{**base.__dict__, "strategy": Strategy(capture=Capture.VLLM)})))
    assert plain[-1].live_bytes == sum(round_size(p.output_bytes) for p in plain) > 0
    assert [p.live_bytes for p in vllm] == [0, 0]
    assert vllm[-1].pool_reserved_bytes <= plain[-1].pool_reserved_bytes


@pytest.mark.parametrize(
    "name", [p.stem for p in sorted((Path(__file__).parent.parent / "configs" / "tiny").glob("*.json"))]
)
def test_every_family_predicts(name):
    """Each family's captured forward runs on meta tensors, as it is captured (transformers asks
    whether a capture is under way and skips host-side reads of a mask then)."""
    spec = prepare(ProfileRequest(model=name, budgets=(1024,))).spec
    smallest = spec.adapter.min_budget(spec.adapter.tower_config(spec.config))
    predicted = predict(prepare(ProfileRequest(model=name, budgets=(max(smallest, 256),))))
    assert predicted[-1].pool_reserved_bytes > 0 and all(p.allocations > 0 for p in predicted)
