"""--model as a Hugging Face id: a cache laid out as huggingface_hub lays it out, and a server on the
loopback standing in for the Hub (HF_ENDPOINT), so that every path runs without the internet.

huggingface_hub reads its settings when imported, so each look-up runs in a fresh process."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = (ROOT / "configs" / "tiny" / "tiny-qwen2-vl.json").read_bytes()
GEMMA4 = (ROOT / "configs" / "tiny" / "tiny-gemma4.json").read_bytes()
PREPROCESSOR = json.dumps({"max_soft_tokens": 70, "pooling_kernel_size": 3}).encode()
# What the stand-in Hub serves: (repository, file) -> bytes.
FILES = {
    ("org/tiny", "config.json"): CONFIG,
    ("org/qwen2-vl-7b", "config.json"): CONFIG,
    ("org/gemma4", "config.json"): GEMMA4,
    ("org/gemma4", "preprocessor_config.json"): PREPROCESSOR,
    ("org/gemma4-bare", "config.json"): GEMMA4,  # no image processor files
    ("org/gemma4-nested", "config.json"): GEMMA4,
    ("org/gemma4-nested", "processor_config.json"): json.dumps({"image_processor": {"max_soft_tokens": 140}}).encode(),
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TAGGED = "fedcba9876543210fedcba9876543210fedcba98"


class FakeHub(BaseHTTPRequestHandler):
    """/{org}/{name}/resolve/{revision}/{file}, answered with the headers the real Hub sends."""

    revisions: ClassVar[dict[str, str]] = {"main": COMMIT, COMMIT: COMMIT, "v1": TAGGED}
    requests: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def _answer(self, body: bool):
        FakeHub.requests.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        error = None
        if repo == "org/gated":
            error = (403, "GatedRepo")
        elif repo not in {r for r, _ in FILES}:
            error = (404, "RepoNotFound")
        elif revision not in self.revisions:
            error = (404, "RevisionNotFound")
        elif (repo, filename) not in FILES:
            error = (404, "EntryNotFound")
        if error:
            self.send_response(error[0])
            self.send_header("X-Error-Code", error[1])
            if error[1] == "EntryNotFound":  # the Hub names the commit it looked in
                self.send_header("X-Repo-Commit", self.revisions[revision])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = FILES[repo, filename]
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.revisions[revision])
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)


@pytest.fixture(scope="module")
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _lookup(tmp_path, model, *, endpoint="http://127.0.0.1:9", offline=False, revision=None):
    """Resolve ``model`` in a fresh process; return (exit code, the resolved spec or the error line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HOME=str(tmp_path / "hf"),
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        PYTHONPATH=str(ROOT),
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    code = (
        "import json, sys\n"
        "from encgraph_profiler.errors import EncgraphError\n"
        "from encgraph_profiler.models.registry import resolve\n"
        "try:\n"
        f"    s = resolve({model!r}, {revision!r})\n"
        "except EncgraphError as e:\n"
        "    print(e); sys.exit(int(e.exit_code))\n"
        "print(json.dumps({'name': s.name, 'family': s.adapter.family, 'commit': s.commit, 'revision': s.revision, "
        "'source': str(s.source),\n"
        "                  'preprocessor': s.config.get('preprocessor_config')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    out = done.stdout.strip()
    return done.returncode, (json.loads(out) if done.returncode == 0 else out)


def _fill_cache(tmp_path, repo="org/tiny", commit=COMMIT, missing=False, files=None):
    """The layout huggingface_hub writes: refs/main -> snapshots/<commit>/<file> -> blob, for each
    of ``files`` ({name: bytes}; config.json alone by default)."""
    folder = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    if missing:  # an earlier look-up found no config.json at this commit
        (folder / ".no_exist" / commit).mkdir(parents=True)
        (folder / ".no_exist" / commit / "config.json").write_text("")
        return
    (folder / "blobs").mkdir()
    (folder / "snapshots" / commit).mkdir(parents=True)
    for name, data in (files or {"config.json": CONFIG}).items():
        blob = folder / "blobs" / hashlib.sha1(data).hexdigest()
        blob.write_bytes(data)
        (folder / "snapshots" / commit / name).symlink_to(os.path.relpath(blob, folder / "snapshots" / commit))


def test_cached_model_resolves_offline_and_records_its_commit(tmp_path):
    _fill_cache(tmp_path)
    code, spec = _lookup(tmp_path, "org/tiny", offline=True)
    assert code == 0 and spec["family"] == "qwen2-vl" and spec["commit"] == COMMIT and spec["name"] == "org/tiny"


def test_cache_is_read_before_the_network(tmp_path):
    _fill_cache(tmp_path)  # the endpoint is a closed port: only the cache can answer
    code, spec = _lookup(tmp_path, "org/tiny")
    assert code == 0 and spec["commit"] == COMMIT


def test_offline_and_not_cached(tmp_path):
    code, message = _lookup(tmp_path, "org/tiny", offline=True)
    assert code == 3 and "not in the Hugging Face cache and HF_HUB_OFFLINE=1" in message


def test_known_missing_config_in_the_cache(tmp_path):
    _fill_cache(tmp_path, missing=True)
    code, message = _lookup(tmp_path, "org/tiny", offline=True)
    assert code == 2 and "has no config.json" in message


def test_download_from_the_hub(tmp_path, hub):
    FakeHub.requests.clear()
    code, spec = _lookup(tmp_path, "org/tiny", endpoint=hub)
    assert code == 0, spec
    assert spec["commit"] == COMMIT and Path(spec["source"]).is_relative_to(tmp_path / "hf")
    assert all(r.endswith("/config.json") for r in FakeHub.requests)  # config.json alone, no weights
    code, spec = _lookup(tmp_path, "org/tiny", endpoint=hub, revision="v1")
    assert code == 0 and spec["commit"] == TAGGED and spec["revision"] == "v1"
    # Now cached: found again with the network off.
    assert _lookup(tmp_path, "org/tiny", offline=True)[1]["commit"] == COMMIT


@pytest.mark.parametrize(
    "model, revision, code, message",
    [
        ("org/absent", None, 2, "no model 'org/absent' on the Hugging Face Hub"),
        ("org/gated", None, 3, "is gated: accept its terms"),
        ("org/tiny", "no-such-branch", 2, "has no revision 'no-such-branch'"),
    ],
)
def test_hub_failures_say_what_to_do(tmp_path, hub, model, revision, code, message):
    got_code, got = _lookup(tmp_path, model, endpoint=hub, revision=revision)
    assert got_code == code and message in got


def test_network_down(tmp_path):
    """No Hub to reach: one message at once, not huggingface_hub's retries (some 20 s); a cached
    config is still read."""
    started = time.perf_counter()
    code, message = _lookup(tmp_path, "org/tiny")  # nothing listens on the endpoint's port
    assert code == 3 and "cannot reach the Hugging Face Hub" in message and "Retrying" not in message
    assert time.perf_counter() - started < 10
    _fill_cache(tmp_path)
    code, spec = _lookup(tmp_path, "org/tiny")
    assert code == 0 and spec["commit"] == COMMIT


def test_a_name_like_a_bundled_one_is_not_mapped_to_it(tmp_path, hub):
    code, spec = _lookup(tmp_path, "org/qwen2-vl-7b", endpoint=hub)
    assert code == 0 and spec["name"] == "org/qwen2-vl-7b" and "configs" not in spec["source"]
    code, message = _lookup(tmp_path, "random-org/qwen2-vl-7b", offline=True)
    assert code == 3 and "random-org/qwen2-vl-7b" in message


def test_bad_ids_and_misplaced_revisions(tmp_path):
    assert _lookup(tmp_path, "org/a//b")[0] == 2
    code, message = _lookup(tmp_path, "qwen2-vl-7b", revision="main")
    assert code == 2 and "--revision applies to Hugging Face ids" in message
    code, message = _lookup(tmp_path, "./nowhere/config.json")
    assert code == 2 and "no such file" in message


def test_a_family_that_reads_preprocessor_config_gets_it_from_the_hub_and_the_cache(tmp_path, hub):
    """Gemma 4 takes max_soft_tokens from the image processor's settings, downloaded beside
    config.json and cached with it: processor_config.json's image_processor object where there is
    one, else preprocessor_config.json; a repository with neither gets the image processor's default."""
    FakeHub.requests.clear()
    code, spec = _lookup(tmp_path, "org/gemma4", endpoint=hub)
    assert code == 0 and spec["family"] == "gemma4" and spec["preprocessor"] == {"max_soft_tokens": 70}
    assert {r.split("/")[-1] for r in FakeHub.requests} == {
        "config.json",
        "processor_config.json",
        "preprocessor_config.json",
    }
    FakeHub.requests.clear()
    code, spec = _lookup(tmp_path, "org/gemma4-nested", endpoint=hub)
    assert code == 0 and spec["preprocessor"] == {"max_soft_tokens": 140}
    assert {r.split("/")[-1] for r in FakeHub.requests} == {"config.json", "processor_config.json"}
    assert _lookup(tmp_path, "org/gemma4-nested", offline=True)[1]["preprocessor"] == {"max_soft_tokens": 140}
    assert _lookup(tmp_path, "org/gemma4", offline=True)[1]["preprocessor"] == {"max_soft_tokens": 70}
    code, spec = _lookup(tmp_path, "org/gemma4-bare", endpoint=hub)
    assert code == 0 and spec["preprocessor"] == {}
    # The Hub said it has none: offline, the cache remembers that.
    assert _lookup(tmp_path, "org/gemma4-bare", offline=True)[1]["preprocessor"] == {}


def test_offline_a_processor_file_the_cache_lacks_is_taken_as_absent(tmp_path):
    """A cache filled by hand may hold config.json and preprocessor_config.json but not
    processor_config.json, and no record that the Hub lacks it: offline, transformers then reads
    what is there, and so does encgraph."""
    _fill_cache(tmp_path, "org/gemma4", files={"config.json": GEMMA4, "preprocessor_config.json": PREPROCESSOR})
    code, spec = _lookup(tmp_path, "org/gemma4", offline=True)
    assert code == 0 and spec["preprocessor"] == {"max_soft_tokens": 70}
    _fill_cache(tmp_path, "org/gemma4-bare", files={"config.json": GEMMA4})
    code, spec = _lookup(tmp_path, "org/gemma4-bare", offline=True)
    assert code == 0 and spec["preprocessor"] == {}
    code, message = _lookup(tmp_path, "org/elsewhere", offline=True)  # config.json itself is never optional
    assert code == 3 and "is not in the Hugging Face cache and HF_HUB_OFFLINE=1" in message
