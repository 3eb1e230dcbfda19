"""The drift test: encgraph's family modules against the census of vLLM's encoder CUDA graphs
(encgraph_profiler/models/vllm_census.json, written by tools/vllm_census.py from the vLLM release
encgraph follows). Needs neither vLLM nor torch."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile
from functools import cache
from pathlib import Path

import pytest

from encgraph_profiler.models import census as census_module
from encgraph_profiler.models.base import Adapter, Refusal, VllmSource
from encgraph_profiler.models.registry import adapters, refusals

ROOT = Path(__file__).resolve().parent.parent
FAKE_TREE = Path(__file__).resolve().parent / "data" / "vllm_tree"
# Phrases by which a reason would say vLLM captures no encoder graphs for the model.
NO_CAPTURE = ("does not capture", "doesn't capture", "captures no", "no encoder graphs", "not capture")


@pytest.fixture(scope="module")
def census() -> census_module.Census:
    return census_module.load()


@cache
def _tool():
    spec = importlib.util.spec_from_file_location("vllm_census", ROOT / "tools" / "vllm_census.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _where(source: VllmSource) -> str:
    return f"{source.file} {source.cls}"


def test_every_census_entry_is_supported_or_refused(census):
    missing = [s.entry for s in census_module.status(census, adapters(), refusals()) if s.state == "missing"]
    assert not missing, (
        f"vLLM {census.vllm_version} captures encoder graphs where no family module cites it (an adapter's "
        "`vllm = VllmSource(...)` or a Refusal's `vllm=(...)`): "
        + "; ".join(f"{_where(e.source)} ({', '.join(e.all_architectures) or 'no architecture'})" for e in missing)
    )


def test_refusals_of_captured_families_do_not_deny_the_capture(census):
    for refusal in refusals().values():
        if not refusal.vllm:
            continue
        said = [phrase for phrase in NO_CAPTURE if phrase in refusal.reason.lower()]
        assert not said, f"{refusal.model_type}: vLLM captures its encoder graphs, yet its reason says {said[0]!r}"
        unknown = [_where(s) for s in refusal.vllm if s not in census.sources()]
        assert not unknown, f"{refusal.model_type} cites {', '.join(unknown)}, which vLLM {census.vllm_version} lacks"


def test_every_adapter_cites_a_census_entry(census):
    cited = [(a.family, source) for a in adapters() for source in (a.vllm, *a.vllm_also) if source]
    stale = [f"{family}: {_where(source)}" for family, source in cited if source not in census.sources()]
    assert not stale, f"adapters citing a file or class vLLM {census.vllm_version} does not have: " + "; ".join(stale)


def test_status_sorts_entries_into_supported_refused_and_missing():
    parsed = census_module.parse(json.loads(json.dumps(EXPECTED)))
    toy, boxy = (e.source for e in parsed.entries)

    class ToyAdapter(Adapter):
        family = "toy"
        vllm = toy

    states = census_module.status(parsed, [ToyAdapter()], {"boxy": Refusal("boxy", "not yet built", ("boxy",))})
    expected = [("supported", ("toy",), ()), ("missing", (), ())]
    assert [(s.state, s.supported_by, s.refused_by) for s in states] == expected
    states = census_module.status(parsed, [], [Refusal("boxy", "not yet built", ("boxy",), (boxy,))])
    assert [s.state for s in states] == ["missing", "refused"]
    entry = parsed.entries[0]
    assert entry.method("get_encoder_cudagraph_budget_range").label == "model_executor/models/toy.py:5"
    assert entry.method("get_encoder_cudagraph_config") is None
    assert entry.inheritors[0].overrides[0].method == "get_encoder_cudagraph_config"
    assert entry.all_architectures == ("ToyChildForCausalLM", "ToyForConditionalGeneration", "ToyPicker")


# The census of tests/data/vllm_tree: a place whose budget range comes from its base class, an
# inheritor in another file (imported under another name) that overrides the config, a registered
# class that picks it in __new__, and a place in a package under models/ that names the interface
# through its module and is registered by the package's re-export.
EXPECTED = {
    "vllm_version": "0.0.1.fake",
    "interface": {"file": "model_executor/models/interfaces.py", "class": "SupportsEncoderCudaGraph"},
    "entries": [
        {
            "file": "model_executor/models/toy.py",
            "class": "ToyForConditionalGeneration",
            "line": 9,
            "architectures": ["ToyForConditionalGeneration"],
            "methods": {
                "get_encoder_cudagraph_budget_range": "model_executor/models/toy.py:5",
                "get_encoder_cudagraph_item_specs": "model_executor/models/toy.py:10",
                "prepare_encoder_cudagraph_capture_inputs": "model_executor/models/toy.py:13",
            },
            "inheritors": [
                {
                    "file": "model_executor/models/toy_child.py",
                    "class": "ToyChild",
                    "line": 4,
                    "architectures": ["ToyChildForCausalLM"],
                    "overrides": {"get_encoder_cudagraph_config": "model_executor/models/toy_child.py:5"},
                }
            ],
            "dispatchers": [
                {
                    "file": "model_executor/models/toy_child.py",
                    "class": "ToyPicker",
                    "architectures": ["ToyPicker"],
                    "to": ["ToyChild"],
                }
            ],
        },
        {
            "file": "models/boxy/common/model.py",
            "class": "BoxyForConditionalGeneration",
            "line": 4,
            "architectures": ["BoxyForConditionalGeneration"],
            "methods": {
                "get_encoder_cudagraph_budget_range": "models/boxy/common/model.py:8",
                "get_encoder_cudagraph_item_specs": "models/boxy/common/model.py:11",
                "prepare_encoder_cudagraph_capture_inputs": "models/boxy/common/model.py:14",
                "get_encoder_cudagraph_config": "models/boxy/common/model.py:5",
            },
            "inheritors": [],
            "dispatchers": [],
        },
    ],
}


def test_census_tool_on_a_fake_tree(tmp_path, capsys):
    tool = _tool()
    written = tmp_path / "census.json"
    assert tool.main([str(FAKE_TREE), "-o", str(written)]) == 0
    assert json.loads(written.read_text()) == EXPECTED
    assert tool.main([str(FAKE_TREE), "--check", str(written)]) == 0

    changed = tmp_path / "tree"
    shutil.copytree(FAKE_TREE, changed)
    child = changed / "vllm" / "model_executor" / "models" / "toy_child.py"
    child.write_text(child.read_text().replace("class ToyChild(ToyParent):", "class ToyChild:"))
    assert tool.main([str(changed), "--check", str(written)]) == 1
    assert "differs from the census" in capsys.readouterr().err


def test_census_tool_reads_a_wheel(tmp_path):
    wheel = tmp_path / "vllm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted((FAKE_TREE / "vllm").rglob("*.py")):
            archive.write(path, path.relative_to(FAKE_TREE).as_posix())
        archive.writestr("vllm-9.9.9.dist-info/METADATA", "Metadata-Version: 2.1\nName: vllm\nVersion: 9.9.9\n")
    assert _tool().census(wheel) == {**EXPECTED, "vllm_version": "9.9.9"}


def test_a_report_records_the_vllm_release_whose_rules_laid_it_out():
    from encgraph_profiler.predict import predicted_report
    from encgraph_profiler.request import DEFAULT_CAPABILITY, ProfileRequest, prepare

    setup = prepare(ProfileRequest(model="tiny-qwen2-vl", budgets=(64,)), DEFAULT_CAPABILITY)
    report = predicted_report(setup, DEFAULT_CAPABILITY)
    assert report.provenance.vllm_rules == census_module.load().vllm_version == "0.33.0"
