"""Every bad input a user can give: one line that says what to do, a documented exit code, no
traceback. One table, each case with its exit code and the words its message must carry."""

import copy
import json
import re
from pathlib import Path

import pytest
from helpers import MiB
from typer.testing import CliRunner

from encgraph_profiler import __version__
from encgraph_profiler.cli import build_app

app = build_app()

TINY = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "tiny-qwen2-vl.json"
ENV = re.compile(r"^[A-Z_]+=")
PREDICTED = Path(__file__).resolve().parent.parent / "examples" / "qwen2-vl-7b.predicted.json"


def _report(data, **changes):
    """A copy of the recorded report, changed by dotted paths: {"budgets.0.pool_reserved_bytes": -5}."""
    data = copy.deepcopy(data)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is _DROP:
            del node[last]
        else:
            node[last] = value
    return data


_DROP = object()


def _config(**vision):
    data = json.loads(TINY.read_text())
    for key, value in vision.items():
        if value is _DROP:
            del data["vision_config"][key]
        else:
            data["vision_config"][key] = value
    return data


def _files(tmp: Path, recorded: dict) -> dict:
    """Named files the cases refer to as {name}."""

    def without(count):  # the first `count` budgets not measured
        gone = [
            {"budget": b["budget"], "status": "out_of_memory", "reason": "out of memory"}
            for b in recorded["budgets"][:count]
        ]
        kept = len(recorded["budgets"]) - count
        return _report(
            recorded, budgets=recorded["budgets"][count:], unmeasured=gone, complete=False, **{"pools.0.graphs": kept}
        )

    first_budget_dropped = without(1)
    rest_at_8192 = recorded["budgets"][3]["pool_growth_bytes"] - 100 * MiB  # the growths still add up to the pool
    zero_growth_regressed = _report(
        recorded, **{"budgets.0.pool_growth_bytes": 100 * MiB, "budgets.3.pool_growth_bytes": rest_at_8192}
    )
    files = {
        "good": recorded,
        "partial": first_budget_dropped,
        "empty": without(len(recorded["budgets"])),
        "stopped": _report(
            recorded,
            stopped_by="SIGINT",
            complete=False,
            budgets=recorded["budgets"][1:],
            unmeasured=[{"budget": 1024, "status": "not_run", "reason": "not run"}],
            **{"pools.0.graphs": 3},
        ),
        "mismatch": _report(recorded, **{"budgets.1.replay_matches_eager": False}),
        "negative": _report(recorded, **{"budgets.0.pool_reserved_bytes": -5}),
        "string": _report(recorded, **{"budgets.2.static_io_bytes": "37 MiB"}),
        "float": _report(recorded, **{"pools.0.reserved_bytes": 2.5e9}),
        "boolflag": _report(recorded, **{"budgets.0.replay_matches_eager": "yes"}),
        "kv0": _report(recorded, **{"model.kv_bytes_per_token": 0}),
        "twopools": _report(recorded, **{"pools.1.pool": "encoder_graphs"}),
        "badpool": _report(recorded, **{"pools.1.pool": "shared"}),
        "nobudgets": _report(recorded, schema_version=2, **{"settings.budgets": [1024, 2048, 4096, 8192, 16384]}),
        "grew0": zero_growth_regressed,
        "future": _report(recorded, schema_version=3),
        # Reports that contradict themselves.
        "pool1": _report(recorded, **{"pools.0.reserved_bytes": 1}),
        "completefalse": _report(recorded, complete=False),
        "completeyes": _report(recorded, complete="yes"),
        "totalnegative": _report(recorded, total_bytes=-100),
        "items0": _report(recorded, **{"budgets.0.items": 0}),
        "overgrown": _report(recorded, **{"budgets.3.pool_growth_bytes": 10**12}),
        "growthsum": _report(recorded, **{"budgets.0.pool_growth_bytes": 100 * MiB}),
        "partsum": _report(recorded, **{"pools.1.parts.weights": 1}),
        "huge": _report(recorded, **{"budgets.0.static_io_bytes": 10**40}),
        "hugelive": _report(recorded, **{"pools.1.live_bytes": 2**63}),
        "config": _config(),
        "deptext": _config(depth="32"),
        "nodepth": _config(depth=_DROP, embed_dim=_DROP),
        "zerowidth": _config(embed_dim=0),
        "novision": {k: v for k, v in _config().items() if k != "vision_config"},
        "alien": {**_config(), "model_type": "llava_next"},
        "heads7": _config(num_heads=7),  # 32 wide: heads that do not divide the width
    }
    paths = {}
    for name, data in files.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(data))
        paths[name] = str(path)
    nan = tmp / "nan.json"  # JSON's NaN literal, as Python writes it
    nan.write_text(json.dumps(recorded).replace('"pool_reserved_bytes": 2648702976', '"pool_reserved_bytes": NaN', 1))
    paths["nan"] = str(nan)
    (tmp / "binary.json").write_bytes(b"\xff\xfe\x00binary")
    paths["binary"] = str(tmp / "binary.json")
    paths["predicted"] = str(PREDICTED)
    (tmp / "longnumber.json").write_text('{"schema_version": ' + "9" * 5000 + "}")
    paths["longnumber"] = str(tmp / "longnumber.json")
    (tmp / "latin1.json").write_bytes(b'{"model_type": "qwen2_vl", "name": "caf\xe9"}')
    paths["latin1"] = str(tmp / "latin1.json")
    (tmp / "notjson.json").write_text("{model_type: qwen2_vl")
    paths["notjson"] = str(tmp / "notjson.json")
    (tmp / "folder").mkdir()
    paths["folder"] = str(tmp / "folder")
    paths["missing"] = str(tmp / "missing.json")
    return paths


PROFILE = ["profile", "--model", "{config}", "--budgets", "64,128"]

CASES = [
    # -- the gate --------------------------------------------------------------------------------
    (["check", "{good}", "{partial}"], 7, "did not measure budget 1024"),
    (["check", "{good}", "{empty}"], 7, "no measured budgets"),
    (["check", "{good}", "{stopped}"], 7, "stopped early (SIGINT)"),
    (["check", "{good}", "{mismatch}"], 7, "replay differed from eager at budget 2048"),
    (["check", "{mismatch}", "{good}"], 7, "baseline report has graphs whose replay differed"),
    (["check", "{good}", "{negative}"], 5, "pool_reserved_bytes is -5; it cannot be negative"),
    (["check", "{negative}", "{good}"], 5, "cannot be negative"),
    (["check", "{good}", "{nan}"], 5, "is nan; expected a whole number of bytes"),
    (["check", "{good}", "{string}"], 5, "static_io_bytes is '37 MiB'; expected a whole number of bytes"),
    (["check", "{good}", "{float}"], 5, "reserved_bytes is 2500000000.0; expected a whole number of bytes"),
    (["check", "{good}", "{boolflag}"], 5, "replay_matches_eager is 'yes'; expected true or false"),
    (["check", "{good}", "{twopools}"], 5, "exactly one 'encoder_graphs' row"),
    (["check", "{good}", "{badpool}"], 5, "pools[1].pool is 'shared'"),
    (["check", "{good}", "{nobudgets}"], 5, "do not cover report.settings.budgets"),
    (["check", "{good}", "{future}"], 5, "schema_version 3"),
    (["check", "{config}", "{good}"], 5, "not an encgraph report"),
    (["check", "{good}", "{missing}"], 5, "no such report file"),
    (["check", "{good}", "{folder}"], 5, "is a folder"),
    (["check", "{good}", "{notjson}"], 5, "not a valid JSON report"),
    (["check", "{good}", "{grew0}"], 1, "budget 1024 pool_growth_bytes (from 0)"),
    (["check", "{good}", "{pool1}"], 5, "pool reserves 1 bytes but budget 1024 says the pool held 2,648,702,976"),
    (["plan", "--from", "{pool1}"], 5, "the pool row contradicts the budgets"),
    (["check", "{good}", "{completefalse}"], 5, "report.complete is false, but every requested budget was measured"),
    (["check", "{good}", "{completeyes}"], 5, "report.complete is 'yes'; expected true or false"),
    (
        ["check", "{good}", "{totalnegative}"],
        5,
        "total_bytes is -100, but the pool rows add up to 5,152,702,464",
    ),
    (["check", "{good}", "{items0}"], 5, "report.budgets[0].items is 0; a captured batch holds at least 1 item"),
    (["check", "{good}", "{overgrown}"], 5, "pool_growth_bytes (1,000,000,000,000) is more than its pool_reserved"),
    (["check", "{good}", "{growthsum}"], 5, "pool_growth_bytes add up to 2,753,560,576 bytes, more than"),
    (["check", "{good}", "{partsum}"], 5, "default pool parts add up to 304,182,273 bytes, not its reserved_bytes"),
    (["check", "{good}", "{huge}"], 5, "static_io_bytes is a 133-bit number; beyond a 64-bit integer"),
    (["check", "{good}", "{hugelive}"], 5, "live_bytes is 9223372036854775808; beyond a 64-bit integer"),
    (["check", "{good}", "{binary}"], 5, "not a report (not UTF-8 text: byte 0 is 0xff)"),
    (["check", "{good}", "{longnumber}"], 5, "not an encgraph report (a number in it has over 4,300 digits)"),
    (
        ["check", "{predicted}", "{good}", "--allow-env-mismatch"],
        5,
        "the baseline was predicted (`encgraph predict`) and the current report measured",
    ),
    (["check", "{good}", "{predicted}"], 5, "check never gates a measurement against a prediction"),
    (["check", "{good}", "{good}", "--tolerance", "5"], 2, "write 5% for 5 percent"),
    (["check", "{good}", "{good}", "--tolerance", "nan%"], 2, "not a finite number"),
    (["check", "{good}", "{good}", "--tolerance", "1e400%"], 2, "not a finite number"),
    (["check", "{good}", "{good}", "--tolerance", "-1%"], 2, "cannot be negative"),
    (["check", "{good}", "{good}", "--tolerance", "pool_bytes=2%"], 2, "unknown figure 'pool_bytes'"),
    (["check", "{good}", "{good}", "--tolerance-abs", "8"], 2, "a unit is needed"),
    (["check", "{good}", "{good}", "--format", "xml"], 2, "see `encgraph check --help`"),
    (["check", "{good}"], 2, "Missing argument"),
    # -- profile: refused before any GPU work ------------------------------------------------------
    ([*PROFILE, "--json", "/proc/x.json"], 2, "cannot be written"),
    ([*PROFILE, "--json", "{folder}"], 2, "cannot be written"),
    ([*PROFILE, "--json", "{folder}/not/here.json"], 2, "cannot be written"),
    ([*PROFILE, "--baseline", "{good}", "--json", "{good}"], 2, "--json {good} is also an input of this command"),
    ([*PROFILE, "--memory-snapshot", "{config}"], 2, "--memory-snapshot {config} is also an input of this command"),
    (["predict", "--model", "{config}", "--json", "{config}"], 2, "--json {config} is also an input of this command"),
    (["report", "{good}", "{partial}", "--html", "{partial}"], 2, "--html {partial} is also an input of this command"),
    (["check", "{good}", "{partial}", "--html", "{partial}"], 2, "--html {partial} is also an input of this command"),
    ([*PROFILE, "--attn", "flash_attention_2"], 3, "needs the flash-attn package"),
    ([*PROFILE, "--attn", "magic"], 2, "unknown --attn 'magic'"),
    (["profile", "--budgets", "99999999999999999999"], 2, "far beyond what one encoder batch can hold"),
    (["profile", "--budgets", "1024,,2048"], 2, "cannot read budgets"),
    (["profile", "--budgets", "0"], 2, "must be a positive number"),
    (["profile", "--budgets", "1024,1024"], 2, "given twice"),
    (["profile", "--budgets", "64", "--max-budget", "128"], 2, "either --budgets or --max-budget"),
    (["profile", "--max-budget", "10"], 2, "below qwen2-vl-7b's smallest encoder budget (64); give 64 or more"),
    (["predict", "--model", "deepseek-vl2", "--max-budget", "300"], 2, "below deepseek-vl2's smallest encoder budget"),
    (["profile", "--max-budget", "abc"], 2, "see `encgraph profile --help`"),
    ([*PROFILE, "--max-items", "0"], 2, "--max-items 0 must be at least 1"),
    ([*PROFILE, "--max-items", "65"], 2, "larger than the smallest budget"),
    ([*PROFILE, "--warmup", "0"], 2, "--warmup must be at least 1"),
    ([*PROFILE, "--dtype", "int3"], 2, "unknown --dtype 'int3'"),
    ([*PROFILE, "--max-num-seqs", "0"], 2, "--max-num-seqs must be a positive number"),
    ([*PROFILE, "--cudagraph-capture-sizes", "1,two"], 2, "cannot read --cudagraph-capture-sizes"),
    ([*PROFILE, "--frobnicate"], 2, "No such option: --frobnicate"),
    ([*PROFILE, "--baseline", "{missing}"], 5, "no such report file"),
    ([*PROFILE, "--baseline", "{negative}"], 5, "cannot be negative"),
    ([*PROFILE, "--baseline", "{good}"], 5, "was made with other settings"),
    (["profile", "--model", "qwen9-vl"], 2, "unknown model 'qwen9-vl'"),
    (
        ["profile", "--model", "MiniCPM-V-4.6"],
        2,
        "MiniCPM-V-4.6 (minicpmv4_6) is not supported: MiniCPM-V 4.6 has no resampler",
    ),
    (
        ["profile", "--model", "{deptext}", "--budgets", "64"],
        2,
        "vision_config.depth is '32'; it must be a whole number above 0",
    ),
    (["profile", "--model", "{zerowidth}", "--budgets", "64"], 2, "vision_config.embed_dim is 0"),
    (["profile", "--model", "{nodepth}", "--budgets", "64"], 2, "vision_config lacks depth, embed_dim"),
    (["profile", "--model", "{novision}", "--budgets", "64"], 2, "has no vision_config"),
    (["profile", "--model", "{alien}", "--budgets", "64"], 2, "model_type 'llava_next' is not supported"),
    (["profile", "--model", "{notjson}", "--budgets", "64"], 2, "cannot read model config"),
    (["profile", "--model", "{folder}", "--budgets", "64"], 2, "a directory without a config.json"),
    # -- configs transformers would build into a tower that cannot run, or that are not text ----------
    (
        ["predict", "--model", "{heads7}", "--budgets", "64"],
        2,
        "the vision width, 32, does not split into its 7 attention heads",
    ),
    (["predict", "--model", "{binary}", "--budgets", "64"], 2, "is not UTF-8 JSON text (byte 0 is 0xff)"),
    (["predict", "--model", "{latin1}", "--budgets", "64"], 2, "is not UTF-8 JSON text (byte 39 is 0xe9)"),
    # -- predict: PYTORCH_CUDA_ALLOC_CONF refused where PyTorch's allocator refuses it ----------------
    (["PYTORCH_CUDA_ALLOC_CONF=foo:bar", "predict", "--model", "{config}"], 3, "PyTorch knows no setting 'foo'"),
    (["PYTORCH_CUDA_ALLOC_CONF=garbage", "predict", "--model", "{config}"], 3, "PyTorch knows no setting 'garbage'"),
    (
        ["PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:128,max_split_size_mb:256", "predict", "--model", "{config}"],
        3,
        "max_split_size_mb is given twice, as 128 and 256",
    ),
    (  # user text is never read as markup: ":abc:" is not an emoji
        ["PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:abc:", "predict", "--model", "{config}"],
        3,
        "PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:abc:: max_split_size_mb:abc is followed by ':'",
    ),
    # -- plan ---------------------------------------------------------------------------------------
    (["plan", "--from", "{good}", "--budgets", "1024"], 2, "--budgets apply only with --model"),
    (
        ["plan", "--from", "{good}", "--max-items", "4", "--dtype", "float32"],
        2,
        "--max-items, --dtype apply only with --model",
    ),
    (["plan", "--from", "{good}", "--gpu-memory", "80"], 2, "a unit is needed"),
    (["plan", "--from", "{good}", "--gpu-memory", "eighty"], 2, "cannot read --gpu-memory 'eighty'"),
    (["plan", "--from", "{good}", "--gpu", "H800"], 2, "unknown --gpu 'H800'"),
    (["plan", "--from", "{good}", "--gpu", "A100"], 2, "--gpu 'A100' is A100-80GB or A100-40GB; give one"),
    (
        ["predict", "--model", "qwen2-vl-2b", "--budgets", "16777216", "--max-items", "1"],
        2,
        "budget 16,777,216 over 1 item puts 67,108,864 patches in each, more than any image holds",
    ),
    (["plan", "--from", "{good}", "--gpu", "L4", "--gpu-memory", "24GiB"], 2, "either --gpu or --gpu-memory"),
    (["plan", "--from", "{good}", "--gpu-memory-utilization", "nan"], 2, "must be above 0 and at most 1"),
    (["plan", "--from", "{good}", "--gpu-memory-utilization", "1.2"], 2, "must be above 0 and at most 1"),
    (["plan", "--from", "{good}", "--margin", "-1GiB"], 2, "cannot read --margin"),
    (["plan", "--from", "{good}", "--kv-cache-dtype", "int4"], 2, "unknown --kv-cache-dtype 'int4'"),
    (["plan", "--from", "{good}", "--max-model-len", "0"], 2, "--max-model-len must be a positive number"),
    (["plan", "--from", "{good}", "--what-if", "H100-80GB,bogus"], 2, "unknown --gpu 'bogus'"),
    (["plan", "--from", "{good}", "--vllm-log", "{good}"], 2, "is an encgraph report, not a vLLM log"),
    (["plan", "--from", "{good}", "--gpu", ""], 2, "--gpu is empty; give a value, or leave the option out"),
    (["plan", "--from", "{good}", "--what-if", ""], 2, "--what-if is empty"),
    (["plan", "--from", "{good}", "--max-model-len", "\u0661\u0662\u0668"], 2, "is not a whole number in digits 0-9"),
    (["plan", "--from", "{good}", "--gpu-memory", "\uff18\uff10GiB"], 2, "cannot read --gpu-memory"),
    (["plan", "--from", "{good}", "--gpu-memory-utilization", "\u0660.\u0669"], 2, "give a fraction such as 0.9"),
    (["plan", "--from", "{kv0}"], 5, "kv_bytes_per_token is 0"),
    (["plan", "--from", "{empty}"], 5, "no measured budgets to plan with"),
    (["plan", "--from", "{missing}"], 5, "no such report file"),
    (["plan"], 2, "give --from REPORT.json, or --model"),
    (["plan", "--from", "{good}", "--model", "{config}"], 2, "give --from REPORT.json or --model, not both"),
    (["plan", "--model", "{config}", "--budgets", "64"], 2, "no GPU here, so plan --model predicts"),
    (["predict", "--model", ""], 2, "'--model' / '-m': is empty; give a bundled name"),
    (["predict", "--model", "{good}"], 2, "is an encgraph report, not a model config"),
    (["sweep", "--model", "{good}", "--budgets", "64", "--out", "{folder}"], 2, "is an encgraph report, not a model"),
    # -- graphs and the command itself --------------------------------------------------------------
    (["graphs", "--max-num-seqs", "0"], 2, "--max-num-seqs must be a positive number"),
    (["graphs", "--budgets", "1024,abc"], 2, "cannot read budgets"),
    (["graphs", "--cudagraph-mode", "MAYBE"], 2, "unknown --cudagraph-mode 'MAYBE'"),
    (
        ["graphs", "--cudagraph-capture-sizes", "1,2", "--max-cudagraph-capture-size", "512"],
        2,
        "--max-cudagraph-capture-size 512 is not the largest of --cudagraph-capture-sizes (2); vLLM refuses the pair",
    ),
    (["graphs", "--max-num-seqs", "\u0661\u0662\u0668"], 2, "is not a whole number in digits 0-9"),
    (["graphs", "--budgets", "\uff11\uff10\uff12\uff14"], 2, "give comma-separated whole numbers in digits 0-9"),
    (["predict", "--budgets", "\u0664\u0660\u0669\u0666"], 2, "give comma-separated whole numbers in digits 0-9"),
    (["predict", "--budgets", "1024", "2048"], 2, "lists take commas, with no spaces: --budgets 1024,2048,4096"),
    (["predict", "--gpu-capability", "\u0669.0"], 2, "give MAJOR.MINOR"),
    (["sweep", "--model", "{config}", "--budgets", "64", "--gpus", "abc", "--out", "{folder}"], 2, "e.g. 0,1,2,3"),
    (["sweep", "--predict", "--model", "{config}", "--budgets", "64", "--out", ""], 2, "'--out': is empty"),
    (["sweep", "--predict", "--model", "{config}", "--budgets", "64", "--out", "{good}"], 2, "is a file, not a folder"),
    (
        ["sweep", "--predict", "--model", "{config}", "--budgets", "64", "--gpu-capability", "9.0,9.0", "--out", "x"],
        2,
        "--gpu-capability '9.0,9.0' names one twice",
    ),
    (
        ["sweep", "--predict", "--model", "{config}", "--budgets", "64", "--gpu-capability", "", "--out", "x"],
        2,
        "--gpu-capability is empty",
    ),
    (["graphs", "--max-items", "0"], 2, "--max-items counts the encoder's images per batch: give it with --budgets"),
    (
        ["predict", "--model", "minicpm-llama3-v-2-5", "--as", "vllm", "--max-frames-per-batch", "4"],
        2,
        "vLLM captures no video layout for MiniCPM-V 2.5",
    ),
    (["--frobnicate"], 2, "No such option: --frobnicate"),
    (["profiel"], 2, "No such command 'profiel'"),
]


def _ids():
    seen: dict[str, int] = {}
    for args, _, _ in CASES:
        name = "-".join(a.strip("-{}").split("=")[0] for a in args[:3])
        seen[name] = seen.get(name, 0) + 1
        yield f"{name}-{seen[name]}"


@pytest.mark.parametrize("args, code, message", CASES, ids=list(_ids()))
def test_bad_input_gives_one_line_and_its_exit_code(args, code, message, tmp_path, recorded_report_data):
    files = _files(tmp_path, recorded_report_data)
    before = {name: Path(path).read_bytes() for name, path in files.items() if Path(path).is_file()}
    env = dict(a.split("=", 1) for a in args if ENV.match(a))  # NAME=value: the environment
    result = CliRunner().invoke(app, [a.format(**files) for a in args if not ENV.match(a)], env=env)
    output = " ".join(result.output.split())  # rich folds long lines on narrow terminals
    assert result.exit_code == code, result.output
    assert message.format(**files) in output, result.output
    assert {
        name: Path(path).read_bytes() for name, path in files.items() if Path(path).is_file()
    } == before  # inputs kept
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    if code != 1:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output


def test_enough_cases():
    assert len(CASES) >= 40


def test_version_and_examples_in_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"encgraph {__version__}"
    top = CliRunner().invoke(app, ["--help"])
    assert "encgraph profile --model Qwen2-VL" in top.output and "Exit codes" in top.output
    assert "encgraph models --format json" in CliRunner().invoke(app, ["models", "--help"]).output
