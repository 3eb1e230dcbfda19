"""The snapshot a real GPU run wrote (tests/data/memory_snapshot, gzip-compressed) against what
pytorch.org/memory_viz reads: its unpickler knows protocols 2 to 4 and a fixed set of opcodes, it
colours events by ``category`` and needs an ``unknown`` one whenever categories are used.

The last test opens the snapshot in PyTorch's own viewer in headless Chromium. That viewer's script
(torch/utils/viz/MemoryViz.js in PyTorch's repository) is not shipped in the torch wheel nor in any
package registry: point ENCGRAPH_MEMORY_VIZ_JS at a copy of it, and ENCGRAPH_D3_MODULES at a
node_modules folder holding D3 version 5 (`npm install d3@5`), the library it imports. Without them
the test is skipped.
"""

import gzip
import json
import os
import pickle
import pickletools
import re
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).parent / "data" / "memory_snapshot" / "qwen2-vl-2b.1024-2048.pickle.gz"
BUDGETS = (1024, 2048)

# The opcodes the viewer's unpickler handles; any other stops it with "UNKNOWN OPCODE".
VIEWER_OPCODES = {
    "PROTO",
    "FRAME",
    "STOP",
    "MARK",
    "MEMOIZE",
    "BINPUT",
    "LONG_BINPUT",
    "BINGET",
    "LONG_BINGET",
    "EMPTY_DICT",
    "DICT",
    "SETITEM",
    "SETITEMS",
    "EMPTY_LIST",
    "LIST",
    "APPEND",
    "APPENDS",
    "EMPTY_TUPLE",
    "TUPLE",
    "TUPLE1",
    "TUPLE2",
    "TUPLE3",
    "NONE",
    "NEWTRUE",
    "NEWFALSE",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG1",
    "BINFLOAT",
    "SHORT_BINUNICODE",
    "BINUNICODE",
}


@pytest.fixture(scope="module")
def snapshot_bytes() -> bytes:
    return gzip.decompress(SNAPSHOT.read_bytes())


def test_the_real_snapshot_is_made_of_what_the_viewer_unpickles(snapshot_bytes):
    assert snapshot_bytes[:2] == b"\x80\x04"
    used = {op.name for op, _, _ in pickletools.genops(snapshot_bytes)}
    assert used <= VIEWER_OPCODES, used - VIEWER_OPCODES


def test_every_event_of_the_real_snapshot_names_its_phase(snapshot_bytes):
    snapshot = pickle.loads(snapshot_bytes)
    events = [e for trace in snapshot["device_traces"] for e in trace]
    categories = {e["category"] for e in events}
    expected = {f"budget={b}" for b in BUDGETS} | {f"warm-up budget={b}" for b in BUDGETS} | {"unknown"}
    assert categories == expected
    # Every warm-up (smallest first) comes before the captures (largest first, into one pool).
    order = [
        c
        for i, c in enumerate(e["category"] for e in events)
        if c != "unknown" and (i == 0 or events[i - 1]["category"] != c)
    ]
    assert order == ["warm-up budget=1024", "warm-up budget=2048", "budget=2048", "budget=1024"]
    # Captures allocate in the graph pool, not the default pool: the segments they made carry its id.
    graph_segments = {s["address"] for s in snapshot["segments"] if tuple(s["segment_pool_id"]) != (0, 0)}
    captured = {e["addr"] for e in events if e["action"] == "segment_alloc" and e["category"].startswith("budget=")}
    assert captured and captured <= graph_segments


class _ModuleFiles(SimpleHTTPRequestHandler):
    """Serves a folder on the loopback; like a bundler, resolves D3's extensionless imports
    (`./selection/index`) to the .js file beside them."""

    def translate_path(self, path):
        local = super().translate_path(path)
        return local + ".js" if not os.path.exists(local) and os.path.isfile(local + ".js") else local

    def log_message(self, *args):
        pass


def _serve(folder: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_ModuleFiles, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _import_map(modules: Path) -> dict:
    """The viewer imports D3 from a CDN; map those addresses, and D3's own package imports, to the
    local npm copy (every D3 5 package has an ES module entry, src/index.js)."""
    imports = {"https://cdn.skypack.dev/d3@5": "/node_modules/d3/index.js"}
    for package in sorted(p.name for p in modules.glob("d3-*")):
        imports[package] = f"/node_modules/{package}/src/index.js"
    for package in ("d3-axis", "d3-scale", "d3-zoom", "d3-brush"):
        imports[f"https://cdn.skypack.dev/{package}@1"] = f"/node_modules/{package}/src/index.js"
    return {"imports": imports}


def test_pytorch_memory_viz_opens_the_real_snapshot(snapshot_bytes, tmp_path):
    script, modules = os.environ.get("ENCGRAPH_MEMORY_VIZ_JS"), os.environ.get("ENCGRAPH_D3_MODULES")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not (script and modules and browser):
        pytest.skip("needs Chromium, ENCGRAPH_MEMORY_VIZ_JS and ENCGRAPH_D3_MODULES (see this file's docstring)")
    from torch.cuda._memory_viz import trace_plot

    page = trace_plot(pickle.loads(snapshot_bytes))  # PyTorch's own offline renderer
    viewer_url = re.search(r'from "(https://[^"]+/MemoryViz\.js)"', page).group(1)
    page = page.replace(viewer_url, "/MemoryViz.js").replace(
        "<head>", f'<head><script type="importmap">{json.dumps(_import_map(Path(modules)))}</script>', 1
    )
    (tmp_path / "index.html").write_text(page)
    shutil.copy(script, tmp_path / "MemoryViz.js")
    (tmp_path / "node_modules").symlink_to(Path(modules).resolve())
    server = _serve(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=30000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr and "Failed to load" not in done.stderr, done.stderr[-3000:]
    legend = re.findall(r'<text[^>]*font-family="helvetica"[^>]*>([^<]+)</text>', done.stdout)
    assert set(legend) == {f"budget={b}" for b in BUDGETS} | {f"warm-up budget={b}" for b in BUDGETS} | {"unknown"}
    assert done.stdout.count("<polygon") > 10  # the timeline is drawn
