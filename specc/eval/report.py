"""The eval's part of a report: per-principle pass rates of every target on the current suite, with their intervals.

A suite inside a corpus (``OUT/eval/``) adds a section to the corpus's ``report.html``; a suite
elsewhere gets a page of its own, ``DIR/report.html``, in the same style.
"""

from __future__ import annotations

import json
import re
from html import escape
from importlib import resources
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup

from specc.errors import InputError
from specc.eval.results import read_results
from specc.eval.suite import SUITE_NAME, write_text

COLORS = ("#8a94a6", "#3b6fd4", "#0f9d7a", "#6d5bd0", "#d9822b", "#c23b3b")
REPORT_NAME = "report.html"

SECTION = """
<h2>Evaluation</h2>
<p class="hint">Share of the held-out suite's items each target passed, per principle, as graded by the judge;
the whisker is the 95 % interval (Wilson). Suite <code>{{ suite[:12] }}</code>: {{ items }} items.
{% if stale %}{{ stale }} result file(s) of an earlier suite are not shown.{% endif %}</p>
<div class="legend">{% for r in results %}<span><i style="background:{{ r.color }}"></i>{{ r.label }}</span>{% endfor %}</div>
<figure class="chart" data-chart="eval">{{ chart }}</figure>
<table>
  <thead><tr><th>Principle</th>{% for r in results %}<th>{{ r.label }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for row in rows %}
    <tr><td>{% if row.id == "overall" %}<strong>overall</strong>{% else %}<code>{{ row.id }}</code>{% endif %}</td>
    {% for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
  {% endfor %}
  </tbody>
</table>
<p class="hint">Judge: {% for j in judges %}<code>{{ j }}</code>{% if not loop.last %}, {% endif %}{% endfor %}.
Compare two targets with <code>specc eval compare</code>.</p>
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ name }} · specc eval report</title>{{ style }}</head>
<body><header><h1>{{ name }}<span class="ver">eval</span></h1>
<p class="meta">suite <code>{{ suite[:12] }}</code> in {{ where }}</p></header>
<main><section class="panel" data-section="eval">{{ section }}</section></main>
<footer>Written by specc from the results in this folder.</footer></body></html>
"""


def _fmt(t: dict) -> str:
    if not t or not t.get("items"):
        return "–"
    lo, hi = t["ci95"]
    return f"{100 * t['pass_rate']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}] · {t['passes']}/{t['items']}"


def rate_chart(groups: list[tuple[str, list[tuple[str, str, dict]]]], width: int = 780) -> Markup:
    """Horizontal pass-rate bars (0-100 %) with interval whiskers, one group of bars per principle."""
    label_w, note_w, row, bar_h, head_h = 150, 150, 22, 13, 22
    plot_x, plot_w = label_w + 10, width - label_w - 10 - note_w
    body, y = [], 6
    for group, bars in groups:
        body.append(f'<text class="grp" x="0" y="{y + 14}">{escape(group[:48])}</text>')
        y += head_h
        for label, color, t in bars:
            cy = y + (row - bar_h) / 2
            rate = t.get("pass_rate") or 0.0
            lo, hi = t.get("ci95") or (0.0, 1.0)
            tip = escape(f"{group}, {label}: {_fmt(t)}")
            body.append(
                f'<text class="lbl" x="{label_w}" y="{cy + 11}" text-anchor="end">{escape(label[:24])}</text>'
                f'<rect class="track" x="{plot_x}" y="{cy}" width="{plot_w}" height="{bar_h}" rx="3"/>'
                f'<rect x="{plot_x}" y="{cy}" width="{rate * plot_w:.1f}" height="{bar_h}" rx="3" fill="{color}">'
                f"<title>{tip}</title></rect>"
                f'<line class="ci" x1="{plot_x + lo * plot_w:.1f}" x2="{plot_x + hi * plot_w:.1f}" y1="{cy + bar_h / 2}" '
                f'y2="{cy + bar_h / 2}" stroke="#1f2430" stroke-width="1.5"><title>{tip}</title></line>'
                + "".join(f'<line x1="{plot_x + v * plot_w:.1f}" x2="{plot_x + v * plot_w:.1f}" y1="{cy + 2}" '
                          f'y2="{cy + bar_h - 2}" stroke="#1f2430" stroke-width="1.5"/>' for v in (lo, hi))
                + f'<text class="val" x="{plot_x + plot_w + 8}" y="{cy + 11}">{escape(_fmt(t))}</text>'
            )
            y += row
        y += 4
    axis_y = y + 2
    grid = []
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        x = plot_x + v * plot_w
        grid.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{axis_y}"/>'
                    f'<text class="ax" x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{int(v * 100)}%</text>')
    height = axis_y + 22
    return Markup(f'<svg class="chart-svg" data-chart="eval" viewBox="0 0 {width} {height}" width="100%" '
                  f'style="max-width:{width}px" role="img" aria-label="Pass rate per principle">'
                  f"<title>Pass rate per principle</title>{''.join(grid + body)}</svg>")


def current_results(eval_dir: Path) -> tuple[str | None, list[tuple[Path, dict]], int]:
    """(suite hash, results of that suite oldest first, how many files of other suites)."""
    try:
        suite = json.loads((eval_dir / SUITE_NAME).read_text(encoding="utf-8")).get("hash")
    except (OSError, ValueError, AttributeError):
        return None, [], 0
    found, stale = [], 0
    for path in sorted(eval_dir.glob("results-*.json")):
        try:
            r = read_results(path)
        except InputError:
            continue
        if r["suite"]["hash"] == suite:
            found.append((path, r))
        else:
            stale += 1
    found.sort(key=lambda pr: (pr[1].get("created_at") or "", pr[0].name))
    return suite, found, stale


def eval_section(eval_dir: Path) -> Markup | None:
    """The section's HTML, or None when ``eval_dir`` holds no results of its current suite."""
    suite, found, stale = current_results(Path(eval_dir))
    if not found:
        return None
    results = [{"label": (r.get("target") or {}).get("label") or p.stem[len("results-"):],
                "color": COLORS[i % len(COLORS)], "data": r} for i, (p, r) in enumerate(found)]
    pids = list(results[-1]["data"]["principles"])
    groups = [("overall", [(r["label"], r["color"], r["data"]["overall"]) for r in results])]
    groups += [(pid, [(r["label"], r["color"], r["data"]["principles"].get(pid) or {}) for r in results])
               for pid in pids]
    rows = [{"id": name, "cells": [_fmt(t) for _, _, t in bars]} for name, bars in groups]
    judges = sorted({(r["data"].get("judge") or {}).get("llm_id") or "?" for r in results})
    env = Environment(autoescape=True)
    return Markup(env.from_string(SECTION).render(
        suite=suite, items=results[-1]["data"]["suite"]["items"], stale=stale, results=results,
        chart=rate_chart(groups), rows=rows, judges=judges))


def _style() -> Markup:
    """The build report's stylesheet, so both pages look alike."""
    page = resources.files("specc.emit").joinpath("report.html").read_text(encoding="utf-8")
    m = re.search(r"<style>.*?</style>", page, re.S)
    return Markup(m.group(0) if m else "")


def write_reports(eval_dir: Path, corpus: Path | None) -> Path:
    """The report that shows this suite's results: the corpus's (when the suite is its ``eval/``) or one of its own."""
    eval_dir = Path(eval_dir)
    if corpus is not None and eval_dir.resolve() == (Path(corpus) / "eval").resolve():
        from specc.emit.report import write_report

        return write_report(Path(corpus))
    section = eval_section(eval_dir)
    suite, found, _ = current_results(eval_dir)
    name = found[-1][1]["spec"]["name"] if found else eval_dir.name
    html = Environment(autoescape=True).from_string(PAGE).render(
        name=name, suite=suite or "", where=str(eval_dir), style=_style(), section=section or "")
    target = eval_dir / REPORT_NAME
    write_text(target, html)
    return target
