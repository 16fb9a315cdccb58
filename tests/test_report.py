"""The HTML build report: contents from a real emitted output, the CLI, and a render in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app
from specc.emit import emit, iter_rows, read_manifest
from specc.emit.report import REPORT_NAME, histogram, human, write_report
from specc.records import Record
from specc.spec.schema import Spec

CHARTS = ("quota", "genres", "kinds", "lengths", "drops", "llm")
# Read at import: the autouse fixture in conftest.py clears SPECC_* variables before each test runs.
REQUIRE_CHROMIUM = bool(os.environ.get("SPECC_REQUIRE_CHROMIUM"))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def make_spec() -> Spec:
    return Spec.model_validate(
        {
            "specc": 1,
            "name": "report-demo",
            "version": "2.0.1",
            "assistant": {"name": "Aria"},
            "principles": [
                {"id": "honesty", "title": "Honesty", "statement": "Aria is honest."},
                {"id": "privacy", "title": "Privacy", "statement": "Aria protects privacy.", "weight": 2},
                {"id": "unbuilt", "title": "Unbuilt", "statement": "Nothing was generated for this one."},
            ],
            "corpus": {"budget": {"tokens": 40_000}},
        }
    )


def make_records() -> list[Record]:
    genres = ("FAQ", "news report", "forum thread", "short story")
    kinds = ("direct", "edge_case", "adversarial", "multi_turn")
    recs = []
    for i in range(48):
        pid = ("honesty", "privacy")[i % 2]
        words = 60 + (i * 37) % 900
        text = f"Document {i}: Aria explains {pid}. " + "word " * words
        if i == 0:
            text = HOSTILE + "\n" + text
        recs.append(Record(kind="document", principle_id=pid, text=text, genre=genres[i % 4] if i % 11 else None,
                           tokens=words + 8))
    for i in range(20):
        pid = ("honesty", "privacy")[i % 2]
        msgs = [{"role": "user", "content": f"Question {i} about {pid}? {HOSTILE if i == 1 else ''}"},
                {"role": "assistant", "content": f"Answer {i}: Aria keeps to {pid}."}]
        verdict = "pass" if i % 5 else "borderline"
        recs.append(Record(kind="demonstration", principle_id=pid, messages=msgs, demo_kind=kinds[i % 4],
                           tokens=40 + i, meta={"judge": {"verdict": verdict, "reason": f"keeps to {pid}"}}))
    return recs


def build_info(**over) -> dict:
    info = {
        "llm": {"provider": "openai", "model": "gpt-test", "calls": 140, "cached": 60, "failed": 3,
                "input_tokens": 91_000, "output_tokens": 52_500, "cost_usd": 0.4321},
        "dropped": {"filters:too_short": 9, "filters:missing_name": 4, "dedup:near_duplicate": 6,
                    "judge:fail": 5, "budget:over_quota": 2},
        "dropped_by_principle": {"honesty": {"filters:too_short": 5, "judge:fail": 5}, "privacy": {"dedup:near_duplicate": 6}},
    }
    info.update(over)
    return info


@pytest.fixture
def out(tmp_path):
    path = tmp_path / "out"
    emit(make_records(), make_spec(), path, build_info=build_info())
    return path


def test_report_holds_every_section(out):
    path = write_report(out)
    assert path == out / REPORT_NAME and oct(path.stat().st_mode & 0o777) == "0o644"
    html = path.read_text(encoding="utf-8")
    for name in CHARTS:
        assert f'<figure class="chart" data-chart="{name}"><svg class="chart-svg" data-chart="{name}"' in html
    # Self-contained: no scripts, no external resources, no fetched fonts.
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]*\s(src|href)\s*=|url\(|@import|https?://", html)
    # Row text is escaped wherever it appears.
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in html
    m = read_manifest(out)
    assert f"{m['counts']['documents']:,}" in html and "$0.4321" in html and "60 cache hits (30%)" in html
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))
    for pid, p in m["principles"].items():
        assert f"{pid} {p['documents']} documents · {p['demonstrations']} demonstrations" in text
    assert "No rows for this principle." in html  # `unbuilt` has a quota but no rows
    assert "judge verdicts: pass 16, borderline 4" in text
    for reason in ("too_short", "missing_name", "near_duplicate", "fail", "over_quota"):
        assert f">{reason}<" in html
    # Samples are the first rows of each principle in shard order.
    for config in ("documents", "demonstrations"):
        for pid in ("honesty", "privacy"):
            first = [r["id"] for r in iter_rows(out, config) if r["principle_id"] == pid][:3]
            assert all(f"<code>{rid[:12]}</code>" in html for rid in first)
    # Each principle's quota appears as a target tick; every under-filled one is listed as short.
    assert html.count('class="target"') == 6
    assert "Short of quota" in html and "<code>unbuilt</code> documents" in html


def test_report_without_drops_or_demonstrations(tmp_path):
    out = tmp_path / "out"
    docs = [r for r in make_records() if r.kind == "document"]
    emit(docs, make_spec(), out, build_info=build_info(dropped={}, llm={}))
    html = write_report(out).read_text(encoding="utf-8")
    assert "No records were dropped." in html and "No demonstrations." in html
    assert "No LLM numbers in the manifest." in html
    assert 'data-chart="lengths"><svg' in html and 'data-chart="genres"><svg' in html


def test_report_as_an_emit_writer(tmp_path):
    # `specc build` passes write_report to emit, which runs it on the temporary directory before the swap.
    out = tmp_path / "built"
    emit(make_records(), make_spec(), out, build_info=build_info(), extra_writers=[write_report])
    html = (out / REPORT_NAME).read_text(encoding="utf-8")
    assert "report-demo" in html and 'data-chart="quota"><svg' in html
    assert not list(tmp_path.glob(".built.tmp-*"))


def test_report_command(out, tmp_path):
    (out / REPORT_NAME).unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out / REPORT_NAME)
    assert (out / REPORT_NAME).read_text(encoding="utf-8").startswith("<!doctype html>")
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "not a specc output" in bad.stderr


def test_chart_helpers():
    assert [human(x) for x in (0, 12, 2.5, 1234, 1_000, 2_500_000)] == ["0", "12", "2.5", "1.2k", "1k", "2.5M"]
    svg = str(histogram("h", "lengths", [10, 11, 12, 40, 41, 99], unit="tokens"))
    tips = re.findall(r"<title>([^<]*): (\d+) documents?</title>", svg)
    assert sum(int(n) for _, n in tips) == 6
    assert all(re.fullmatch(r"\d+–\d+ tokens", label) for label, _ in tips)  # whole-token bins
    assert "median 26 tokens" in svg
    assert "median 2.5 tokens" in str(histogram("h", "even", [1, 2, 3, 4], unit="tokens"))
    assert str(histogram("h", "one", [7], unit="tokens")).count("<rect") == 1


PROBE_HEAD = """<script>
window.__errors = [];
addEventListener("error", function (e) { __errors.push(String(e.message || (e.target && (e.target.src || e.target.href)))); }, true);
var __ce = console.error; console.error = function () { __errors.push([].join.call(arguments, " ")); __ce.apply(console, arguments); };
</script>"""
PROBE_TAIL = """<script>
(function () {
  var out = {errors: window.__errors, charts: {}, width: document.documentElement.scrollWidth, viewport: innerWidth,
             resources: performance.getEntriesByType("resource").map(function (e) { return e.name; })};
  document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
    var r = svg.getBoundingClientRect(), s = getComputedStyle(svg), fig = svg.closest("figure");
    out.charts[svg.dataset.chart] = {w: r.width, h: r.height, shown: s.display !== "none" && s.visibility === "visible",
                                     marks: svg.querySelectorAll("rect, line").length, figure: fig ? fig.dataset.chart : null};
  });
  var pre = document.createElement("pre"); pre.id = "specc-probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,2000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)})


@pytest.mark.skipif(CHROMIUM is None and not REQUIRE_CHROMIUM, reason="chromium is not installed")
def test_report_renders_in_chromium(out, tmp_path):
    from PIL import Image

    assert CHROMIUM, "SPECC_REQUIRE_CHROMIUM is set but chromium is not installed"
    report = write_report(out)
    html = report.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</head>", PROBE_HEAD + "</head>").replace("</body>", PROBE_TAIL + "</body>"))

    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="specc-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    result = json.loads(unescape(found.group(1)))
    assert result["errors"] == [] and result["resources"] == []
    assert result["width"] <= result["viewport"], "the page scrolls sideways"
    assert sorted(result["charts"]) == sorted(CHARTS)
    for name, c in result["charts"].items():
        assert c["figure"] == name and c["shown"], name
        assert c["w"] > 200 and c["h"] > 40 and c["marks"] >= 3, (name, c)

    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # the page has no script, so any console line is an error
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.size == (1280, 2000)
        rgb = img.convert("RGB")
    colors = rgb.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, charts and panels, not a blank page
    background = max(colors)[1]
    busy = sum(n for n, c in colors if c != background)
    assert busy > 0.1 * 1280 * 2000
    # The charts were painted: many pixels in the documents and demonstrations bar colours.
    doc_blue = sum(n for n, c in colors if max(abs(a - b) for a, b in zip(c, (0x3B, 0x6F, 0xD4))) < 8)
    demo_green = sum(n for n, c in colors if max(abs(a - b) for a, b in zip(c, (0x0F, 0x9D, 0x7A))) < 8)
    assert doc_blue > 5000 and demo_green > 2000


def test_report_shows_coverage_and_flags_a_repetitive_principle(tmp_path):
    import random

    pids = ("honesty", "privacy", "safety", "tone")
    spec = Spec.model_validate({"specc": 1, "name": "div", "assistant": {"name": "Aria"},
                                "principles": [{"id": p, "title": p, "statement": f"Aria and {p}."} for p in pids],
                                "corpus": {"budget": {"tokens": 40_000}}})
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(3000)]
    recs = []
    for pid in pids:
        for i in range(30):
            if pid == "tone":  # the same sentence again and again
                text = "Aria keeps a calm and friendly tone with every user. " * 20
            else:
                text = " ".join(rng.choice(vocab) for _ in range(200))
            recs.append(Record(kind="document", principle_id=pid, text=f"{text} {i}", genre=("FAQ", "op-ed")[i % 2],
                               facet=("principle", "subrule-0", "generated-1")[i % 3], tokens=250))
    expansion = {pid: {"facets": 4, "doc_types": 2} for pid in pids}
    out = tmp_path / "out"
    emit(recs, spec, out, build_info=build_info(expansion=expansion), extra_writers=[write_report])
    m = read_manifest(out)
    d = m["principles"]["honesty"]["diversity"]
    assert (d["facets"], d["facets_covered"], d["doc_types_used"]) == (4, 3, 2)
    figures = {pid: m["principles"][pid]["diversity"]["distinct_4grams_per_1k_words"]["documents"] for pid in pids}
    assert figures["tone"] < 0.2 * figures["honesty"] and m["diversity"]["low"]["documents"] == ["tone"]
    html = (out / REPORT_NAME).read_text(encoding="utf-8")
    assert "Coverage and diversity" in html and "Low diversity" in html
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))
    assert re.search(r"tone documents: [\d.]+ against a median of", text)
    assert "honesty 3 / 4 2" in text


def test_hundreds_of_document_types_are_summarised(tmp_path):
    recs = [Record(kind="document", principle_id="honesty", text=f"Document {i}: Aria is honest. " + "word " * 50,
                   genre=f"kind of document {i % 60}", tokens=60) for i in range(240)]
    out = tmp_path / "out"
    emit(recs, make_spec(), out, build_info=build_info(), extra_writers=[write_report])
    html = (out / REPORT_NAME).read_text(encoding="utf-8")
    genres = html[html.index('data-chart="genres"'):html.index('data-chart="kinds"')]
    assert "40 other kinds" in genres and genres.count('class="lbl"') == 21
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| 35 other kinds | 140 |" in card and card.count("| kind of document ") == 25
