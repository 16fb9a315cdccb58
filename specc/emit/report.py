"""The build report: one self-contained HTML page (inline CSS and server-side SVG, no network).

``write_report(out_dir)`` reads ``manifest.json`` and the shards and writes ``report.html``
beside them. It also runs as an emit writer on the temporary build directory.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup

from specc.errors import OutputError

REPORT_NAME = "report.html"
SAMPLES = 3  # rows shown per principle and config
SAMPLE_CHARS = 3000
CONFIGS = ("documents", "demonstrations")

DOC = "#3b6fd4"
DEMO = "#0f9d7a"
MIX = "#6d5bd0"
DROP = "#d9822b"
FAIL = "#d64545"
QUOTA = "#1f2430"
HALF = {"width": 520, "label_w": 150}  # charts that share a row with another


def human(n: float) -> str:
    """1234 -> 1.2k; 2500000 -> 2.5M."""
    n = float(n)
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.1f}".rstrip("0").rstrip(".") + unit
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- SVG charts -------------------------------------------------------------------


@dataclass
class Bar:
    label: str
    value: float
    color: str
    target: float | None = None
    note: str = ""
    tip: str = ""
    group: str = ""  # a heading drawn above the first bar of each group


def _ticks(top: float, n: int = 4, integer: bool = False) -> list[float]:
    """Round tick values from 0 up to at least ``top``; whole numbers only for counts."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    return [i * step for i in range(int(math.ceil(top / step)) + 1)]


def _svg(name: str, width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart-svg" data-chart="{escape(name)}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{escape(label)}">'
        f'<title>{escape(label)}</title>{"".join(body)}</svg>'
    )


def hbar_chart(
    name: str, label: str, bars: list[Bar], *, width: int = 780, label_w: int = 190, counts: bool = True
) -> Markup:
    """Horizontal bars, an optional target tick on each, grouped under headings."""
    note_w, row, bar_h, head_h = min(150, width // 5), 26, 16, 24
    plot_x, plot_w = label_w + 10, width - label_w - 10 - note_w
    top = max([b.value for b in bars] + [b.target or 0 for b in bars] + [0])
    ticks = _ticks(top, integer=counts)
    scale = plot_w / (ticks[-1] or 1)
    body, y, group = [], 8, None
    for b in bars:
        if b.group and b.group != group:
            group = b.group
            y += 4
            body.append(f'<text class="grp" x="0" y="{y + 14}">{escape(_cut(group, 40))}</text>')
            y += head_h
        cy = y + (row - bar_h) / 2
        w = max(b.value * scale, 0.5 if b.value else 0)
        tip = escape(b.tip or f"{b.label}: {b.value:g}")
        body.append(
            f'<text class="lbl" x="{label_w}" y="{cy + 12.5}" text-anchor="end">{escape(_cut(b.label, max(8, label_w // 7)))}'
            f"<title>{escape(b.label)}</title></text>"
            f'<rect class="track" x="{plot_x}" y="{cy}" width="{plot_w}" height="{bar_h}" rx="3"/>'
            f'<rect x="{plot_x}" y="{cy}" width="{w:.1f}" height="{bar_h}" rx="3" fill="{b.color}">'
            f"<title>{tip}</title></rect>"
        )
        if b.target:
            tx = plot_x + b.target * scale
            body.append(
                f'<line class="target" x1="{tx:.1f}" x2="{tx:.1f}" y1="{cy - 3}" y2="{cy + bar_h + 3}" '
                f'stroke="{QUOTA}"><title>target {b.target:,.0f}</title></line>'
            )
        body.append(f'<text class="val" x="{plot_x + plot_w + 8}" y="{cy + 12.5}">{escape(b.note)}</text>')
        y += row
    axis_y = y + 6
    for t in ticks:
        x = plot_x + t * scale
        body.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{axis_y}"/>'
            f'<text class="ax" x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{human(t)}</text>'
        )
    # Grid lines first, so bars are drawn over them.
    body = body[-len(ticks):] + body[: -len(ticks)]
    return _svg(name, width, axis_y + 22, label, body)


def histogram(name: str, label: str, values: list[int], *, unit: str, width: int = 780, height: int = 250) -> Markup:
    """Counts of ``values`` in up to 24 equal-width bins, with the median marked."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    n_bins = max(1, min(24, math.ceil(math.sqrt(arr.size))))
    # Bins of a round whole-token width (1, 2, 5 × 10^k) starting on a multiple of it, so edges read well.
    step = int(_ticks(float(arr.max() - arr.min() + 1), n_bins, integer=True)[1])
    lo = math.floor(arr.min() / step) * step
    edges = np.arange(lo, math.floor(arr.max()) + step + 1, step, dtype=float)
    counts, edges = np.histogram(arr, bins=edges)
    hi = float(edges[-1])
    left, bottom, top_pad, right = 48, height - 34, 14, 12
    plot_w, plot_h = width - left - right, bottom - top_pad
    yticks = _ticks(float(counts.max()), 3, integer=True)
    ys = plot_h / (yticks[-1] or 1)
    bw = plot_w / len(counts)
    body = []
    for t in yticks:
        y = bottom - t * ys
        body.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="ax" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{human(t)}</text>'
        )
    for i, c in enumerate(counts):
        h = c * ys
        x = left + i * bw
        tip = f"{edges[i]:,.0f}–{edges[i + 1] - 1:,.0f} {unit}: {c} document{'s' if c != 1 else ''}"
        body.append(
            f'<rect x="{x + 1:.1f}" y="{bottom - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{DOC}" rx="2"><title>{escape(tip)}</title></rect>'
        )
    step = max(1, len(edges) // 6)
    for i in range(0, len(edges), step):
        x = left + i * bw
        body.append(f'<text class="ax" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{human(edges[i])}</text>')
    med = float(np.median(arr))
    mx = left + (med - lo) / ((hi - lo) or 1) * plot_w
    anchor = "end" if mx > left + plot_w * 0.75 else "start"
    tx = mx - 5 if anchor == "end" else mx + 5
    body.append(
        f'<line class="median" x1="{mx:.1f}" x2="{mx:.1f}" y1="{top_pad - 4}" y2="{bottom}"/>'
        f'<text class="ax strong" x="{tx:.1f}" y="{top_pad + 6}" text-anchor="{anchor}">'
        f"median {human(med)} {escape(unit)}</text>"
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}"/>'
    )
    return _svg(name, width, height, label, body)


# -- data -------------------------------------------------------------------------


@dataclass
class Samples:
    documents: list[dict] = field(default_factory=list)
    demonstrations: list[dict] = field(default_factory=list)


@dataclass
class Scan:
    """What the report needs from the rows, gathered in one streaming pass."""

    doc_tokens: list[int] = field(default_factory=list)
    genres: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    samples: dict[str, Samples] = field(default_factory=dict)


def _trim(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return text[:SAMPLE_CHARS] + f"\n[… {len(text) - SAMPLE_CHARS:,} more characters]"


def scan(out_dir: Path) -> Scan:
    from specc.emit import iter_rows

    s = Scan()
    for row in iter_rows(out_dir, "documents"):
        s.doc_tokens.append(int(row.get("tokens") or 0))
        s.genres[row.get("genre") or "unspecified"] += 1
        bucket = s.samples.setdefault(row["principle_id"], Samples()).documents
        if len(bucket) < SAMPLES:
            bucket.append({**row, "text": _trim(row.get("text") or "")})
    for row in iter_rows(out_dir, "demonstrations"):
        s.kinds[row.get("kind") or "unspecified"] += 1
        if row.get("judge_verdict"):
            s.verdicts[row["judge_verdict"]] += 1
        bucket = s.samples.setdefault(row["principle_id"], Samples()).demonstrations
        if len(bucket) < SAMPLES:
            msgs = [{"role": m["role"], "content": _trim(m["content"])} for m in row.get("messages") or []]
            bucket.append({**row, "messages": msgs})
    return s


def quota_rows(manifest: dict) -> list[dict]:
    """(principle, config, target, achieved, rows) from the manifest's per-principle numbers."""
    out = []
    for pid, p in (manifest.get("principles") or {}).items():
        by = p.get("by_config") or {}
        for config in CONFIGS:
            c = by.get(config)
            if c is None:
                c = {"rows": p.get(config, 0), "tokens": None, "quota": None}
            out.append({"principle": pid, "config": config, "target": c.get("quota") or 0,
                        "achieved": c.get("tokens"), "rows": c.get("rows") or 0})
    return out


# -- page -------------------------------------------------------------------------


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}%" if b else "–"


def charts(manifest: dict, s: Scan) -> dict[str, Markup | None]:
    out: dict[str, Markup | None] = {}
    bars = []
    for q in quota_rows(manifest):
        achieved = q["achieved"] or 0
        kind = "documents" if q["config"] == "documents" else "demos"
        bars.append(Bar(
            label=kind, value=achieved, color=DOC if q["config"] == "documents" else DEMO, target=q["target"] or None,
            note=f"{human(achieved)} / {human(q['target'])} · {_pct(achieved, q['target'])}" if q["target"]
            else human(achieved),
            tip=f"{q['principle']} {q['config']}: {achieved:,} tokens of {q['target']:,} in {q['rows']} rows",
            group=q["principle"],
        ))
    out["quota"] = (hbar_chart("quota", "Tokens per principle against quota", bars, label_w=90, counts=False)
                    if bars else None)

    def mix(name: str, label: str, counts: Counter, color: str, top: int = 20) -> Markup | None:
        total = sum(counts.values())
        common = counts.most_common()
        if len(common) > top + 1:  # generated document types run to hundreds
            rest = common[top:]
            common = common[:top] + [(f"{len(rest)} other kinds", sum(v for _, v in rest))]
        rows = [Bar(k, v, color, note=f"{v:,} · {_pct(v, total)}") for k, v in common]
        return hbar_chart(name, label, rows, **HALF) if rows else None

    out["genres"] = mix("genres", "Documents by genre", s.genres, MIX)
    out["kinds"] = mix("kinds", "Demonstrations by kind", s.kinds, DEMO)
    out["lengths"] = (histogram("lengths", "Document length (tokens)", s.doc_tokens, unit="tokens")
                      if s.doc_tokens else None)

    drops = []
    for key, n in sorted((manifest.get("dropped") or {}).items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])):
        stage, _, reason = key.partition(":")
        drops.append(Bar(reason or stage, n, DROP, note=f"{n:,}", group=stage))
    out["drops"] = hbar_chart("drops", "Dropped records by stage and reason", drops, **HALF) if drops else None

    llm = manifest.get("llm") or {}
    calls = [(k, llm.get(k)) for k in ("calls", "cached", "failed") if isinstance(llm.get(k), (int, float))]
    labels = {"calls": "LLM calls", "cached": "cache hits", "failed": "failed"}
    colors = {"calls": DOC, "cached": DEMO, "failed": FAIL}
    out["llm"] = (hbar_chart("llm", "LLM calls, cache hits and failures",
                             [Bar(labels[k], v, colors[k], note=f"{v:,}") for k, v in calls], **HALF)
                  if calls else None)
    return out


def render_report(out_dir: Path) -> str:
    """The report page for an output directory."""
    from specc.emit import read_manifest

    manifest = read_manifest(out_dir)
    s = scan(out_dir)
    llm = manifest.get("llm") or {}
    tokens = manifest.get("tokens") or {}
    counts = manifest.get("counts") or {}
    dropped_total = sum((manifest.get("dropped") or {}).values())
    served = (llm.get("calls") or 0) + (llm.get("cached") or 0)
    short = [q for q in quota_rows(manifest) if q["target"] and (q["achieved"] or 0) < 0.9 * q["target"]]
    principles = []
    for pid, p in (manifest.get("principles") or {}).items():
        dropped = p.get("dropped")
        principles.append({
            "id": pid, "documents": p.get("documents", 0), "demonstrations": p.get("demonstrations", 0),
            "tokens": p.get("tokens", 0), "quota": p.get("quota") if isinstance(p.get("quota"), (int, float))
            else sum((p.get("quota") or {}).values()),
            "dropped": sum(dropped.values()) if isinstance(dropped, dict) else (dropped or 0),
            "samples": s.samples.get(pid, Samples()),
            "diversity": p.get("diversity") or {},
        })
    diversity = manifest.get("diversity") or {}
    low_diversity = [(pid, c, ((manifest["principles"][pid].get("diversity") or {}).get("distinct_4grams_per_1k_words") or {}).get(c),
                      (diversity.get("median") or {}).get(c))
                     for c, pids in (diversity.get("low") or {}).items() for pid in pids if pid in manifest["principles"]]
    from specc.eval.report import eval_section

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["human"] = human
    env.filters["pct"] = lambda a, b: _pct(a or 0, b or 0)
    template = env.from_string(resources.files("specc.emit").joinpath("report.html").read_text(encoding="utf-8"))
    return template.render(
        m=manifest, spec=manifest.get("spec") or {}, llm=llm, tokens=tokens, counts=counts,
        dropped_total=dropped_total, cache_rate=_pct(llm.get("cached") or 0, served), charts=charts(manifest, s),
        principles=principles, short=short, verdicts=dict(s.verdicts.most_common()), diversity=diversity,
        low_diversity=low_diversity, evaluation=eval_section(out_dir / "eval"),
    )


def write_report(out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path."""
    out_dir = Path(out_dir)
    html = render_report(out_dir)
    target = out_dir / REPORT_NAME
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".html", dir=out_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this is a file to share
        os.replace(tmp, target)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
    return target
