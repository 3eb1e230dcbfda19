"""The report page: its bars carry the reports' bytes, it is self-contained, and a real headless
browser renders it to a page that is not blank. CI installs Chromium from the Debian packages."""

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest
from helpers import grow_largest_pool, write
from typer.testing import CliRunner

from encgraph_profiler.cli import build_app
from encgraph_profiler.html_report import render
from encgraph_profiler.render import POOL_TITLES
from encgraph_profiler.report_io import PoolName, load

app = build_app()


class Elements(HTMLParser):
    """Every start tag, with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _elements(page: str):
    parser = Elements()
    parser.feed(page)
    return parser.tags


@pytest.fixture
def two_reports(recorded_report_path, recorded_report_data, tmp_path):
    grown = write(tmp_path / "grown.json", grow_largest_pool(recorded_report_data, 0.10))
    return load(recorded_report_path), load(grown)


def test_bars_carry_the_reports_bytes_in_proportion(two_reports):
    baseline, current = two_reports
    page = render([("baseline", baseline), ("current", current)])
    tags = _elements(page)
    bars = [a for t, a in tags if t == "rect" and a.get("class") == "bar"]
    for index, report in enumerate((baseline, current)):
        mine = [a for a in bars if a["data-report"] == str(index) and a["data-series"] == "encoder pool after capture"]
        assert sorted(int(a["data-bytes"]) for a in mine) == sorted(b.pool_reserved_bytes for b in report.budgets)
        io = [int(a["data-bytes"]) for a in bars if a["data-report"] == str(index) and a["data-series"] == "static I/O"]
        assert sorted(io) == sorted(b.static_io_bytes for b in report.budgets)
        pools = {
            a["data-pool"]: int(a["data-bytes"])
            for t, a in tags
            if t == "rect" and a.get("class") == "pool" and a["data-report"] == str(index)
        }
        assert pools[PoolName.ENCODER_GRAPHS.value] == report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    # Side by side: the current report's largest budget is 10% above the baseline's, and its bar as much taller.
    compare = [a for a in bars if a["data-series"] in ("baseline", "current") and a["data-group"] == "8,192"]
    heights = {a["data-series"]: float(a["height"]) for a in compare}
    sizes = {a["data-series"]: int(a["data-bytes"]) for a in compare}
    assert sizes["current"] > sizes["baseline"]
    assert heights["current"] / heights["baseline"] == pytest.approx(sizes["current"] / sizes["baseline"], rel=0.01)


def test_the_page_is_self_contained(two_reports):
    page = render([("baseline", two_reports[0])])
    tags = _elements(page)
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, a in tags if any(k in a for k in ("src", "href"))]
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_and_check_write_the_page(recorded_report_path, recorded_report_data, tmp_path):
    runner = CliRunner()
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(recorded_report_path), "--html", str(page), "--label", "main"])
    assert result.exit_code == 0, result.output
    assert "<h2>main</h2>" in page.read_text()
    grown = write(tmp_path / "grown.json", grow_largest_pool(recorded_report_data, 0.10))
    result = runner.invoke(app, ["check", str(recorded_report_path), str(grown), "--html", str(tmp_path / "pr.html")])
    assert result.exit_code == 1  # the gate still decides the exit code
    assert (
        "<h2>baseline</h2>" in (tmp_path / "pr.html").read_text()
        and "<h2>current</h2>" in (tmp_path / "pr.html").read_text()
    )
    assert runner.invoke(app, ["report", str(recorded_report_path), "--html", str(tmp_path)]).exit_code == 2  # a folder
    assert (
        runner.invoke(
            app, ["report", str(recorded_report_path), "--html", str(page), "--label", "a", "--label", "b"]
        ).exit_code
        == 2
    )


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _png_pixels(data: bytes):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, channels)])
        previous = line
    return width, height, rows


def test_a_headless_browser_renders_the_page(two_reports, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium: .ci/run installs it from the Debian packages")
        pytest.skip("no Chromium here (CI installs it)")
    page = tmp_path / "page.html"
    page.write_text(render([("baseline", two_reports[0]), ("current", two_reports[1])]))
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr  # no script error, no console message
    rendered = _elements(dom.stdout)
    bars = [a for t, a in rendered if t == "rect" and a.get("class") == "bar"]
    assert sorted({int(a["data-bytes"]) for a in bars if a["data-series"] == "baseline"}) == sorted(
        {b.pool_reserved_bytes for b in two_reports[0].budgets}
    )
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [*flags, "--window-size=1000,1200", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1200)
    colours = {pixel for row in rows for pixel in row}
    assert len(colours) > 20  # text, axes and bars, not a blank page
    first_series = sum(row.count((0x4E, 0x79, 0xA7)) for row in rows)
    assert first_series > 500  # the first series' bars are drawn


def test_the_header_leaves_out_what_a_report_does_not_have(recorded_report_path):
    """A prediction has no driver, no CUDA version: the header names none ("driver , CUDA ,"),
    and says the pool is predicted."""
    predicted = load(recorded_report_path.parent / "qwen2-vl-7b.predicted.json")
    page = render([("predicted", predicted)])
    header = page[page.index("<section") : page.index("</p>")]
    assert "driver" not in header and "CUDA" not in header and "; ." not in header and ", ," not in header
    assert "Encoder graphs would hold (predicted)" in header
    measured = render([("measured", load(recorded_report_path))])
    assert "driver 580.159.04, CUDA 13.0" in measured and "Encoder graphs hold" in measured


def test_a_pool_a_prediction_does_not_measure_reads_n_a_and_has_no_bar(recorded_report_path):
    predicted = load(recorded_report_path.parent / "qwen2-vl-7b.predicted.json")
    unmeasured = [p for p in predicted.pools if p.reserved_bytes is None]
    assert unmeasured  # the default pool and memory outside the allocator are not predicted
    page = render([("predicted", predicted)])
    legend = page[page.index('<div class="legend">') :].split("</div>")[0]
    for pool in unmeasured:
        assert f"{POOL_TITLES[pool.pool]} n/a" in legend
        assert f'data-pool="{pool.pool.value}"' not in page
    assert "0.0 MiB" not in legend
    assert "128 items per batch" in page
