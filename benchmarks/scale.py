"""Scale benchmark: a 58-principle spec built at midtraining size against an instant endpoint.

The fake OpenAI-compatible server runs in its own process with no latency and answers
every stage in shape (documents as long as their brief asks), so the build's wall time
is specc's own: planning, the engine, parsing, curation and emit. Then the same build
runs again unchanged, which must make no call. The responder answers every stage,
facets and document types included, with distinct text, as a capable model would.

    python benchmarks/scale.py                      # 25M tokens (a few minutes)
    python benchmarks/scale.py --budget 250000      # the small end of the range
    python benchmarks/scale.py --batch              # the same through the fake server's Batch API, in waves

Before building, ``specc plan`` predicts the build's calls (top-up included as an estimate).
The summary line is ``budget_fill=<kept/budget> worst_principle_kind=<min kept/quota>
calls=<n> wall_s=<s> calls_per_s=<x> cpu_ms_per_call=<ms> peak_rss_mb=<m> noop_s=<s> noop_calls=<n>
plan_calls=<n> plan_s=<s> rounds=<n>``; the target is ``budget_fill >= 0.97`` and every
principle × kind at 0.90 of its quota or more, with at most one top-up round, at 250k and
at 25M tokens. ``cpu_ms_per_call`` is the build process's CPU time (engine, parsing, curation
and emit) over its calls. The last line is ``noop_s=<s> noop_calls=<n>``: an unchanged rebuild
into the same output, whose calls are counted as the entries it added to the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "stages"))

TOPICS = (
    "honesty", "privacy", "medical questions", "legal questions", "financial advice", "children", "elections",
    "self-harm", "weapons", "copyright", "security research", "personal data", "flattery", "uncertainty",
    "operator instructions", "user autonomy", "emotional support", "controversial topics", "humour", "code",
    "translation", "citations", "persuasion", "impersonation", "tool use", "memory", "agents", "refusals",
    "tone", "accessibility", "minors", "harassment", "extremism", "misinformation", "surveillance", "grief",
    "dieting", "gambling", "drugs", "hacking", "religion", "history", "science", "climate", "employment",
    "education", "relationships", "parenting", "pets", "travel", "cooking", "sport", "music", "art",
    "negotiation", "debate", "journalism", "research ethics",
)


def make_spec(n: int, budget: int, url: str, concurrency: int, batch: bool = False) -> dict:
    """A spec shaped like one imported from a public model spec: n principles, uneven sub-rules and weights."""
    rng = random.Random(7)
    principles = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        principles.append({
            "id": f"{re.sub(r'[^a-z0-9]+', '-', topic)}-{i}",
            "title": f"How Aria handles {topic}",
            "statement": f"Aria handles {topic} with care, saying what it knows and what it does not.",
            "rationale": f"People rely on Aria when {topic} matters to them; care here protects their trust "
                         f"and their interests, and explaining the reason helps in cases no rule foresaw.",
            "subrules": [f"Rule {j} about {topic}: be specific about case {j}." for j in range(rng.randrange(0, 6))],
            "priority": rng.randrange(0, 5),
            "weight": rng.choice((0.5, 1.0, 1.0, 1.5, 2.0)),
            "examples": [{"user": f"A question about {topic} number {i}?",
                          "good": f"A careful answer about {topic}.", "note": "careful"}],
        })
    return {
        "specc": 1,
        "name": "scale-bench",
        "assistant": {"name": "Aria", "developer": "Example Labs"},
        "principles": principles,
        "corpus": {"budget": {"tokens": budget}, "filters": {"check_language": False}},
        "generator": {"provider": "openai", "model": "fake-model", "base_url": url, "concurrency": concurrency,
                      "max_retries": 2, "batch": batch, "batch_options": {"poll_seconds": 0.2}},
    }


def serve() -> None:
    """Run the fake server with a stage-aware responder whose documents have the length their brief asks."""
    from fakeserver import FakeServer
    from responder import StageResponder, _rng, _words

    class Sized(StageResponder):
        def document(self, body: dict, text: str) -> str:
            m = re.search(r"Length: about (\d+) words", text)
            words = int(m.group(1)) if m else 300
            rng = _rng(body)
            sentences = [f"Aria {_words(rng, 11)}." for _ in range(max(4, words // 12))]
            return "<plan>\nopen with a scene; explain why\n</plan>\n<document>\n" + " ".join(sentences) + "\n</document>"

        def reply(self, body: dict, text: str) -> str:
            rng = _rng(body)  # replies vary in length, as a real model's do
            return "Here is what I think: " + " ".join(f"{_words(rng, 12)}." for _ in range(rng.randint(6, 30)))

    server = FakeServer(Sized(), port=0).start()
    print(server.url, flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        server.stop()


def cache_entries(cache: Path) -> int:
    """Results stored in the cache: every call a build makes is stored, so the difference is its calls."""
    import sqlite3

    if not cache.is_file():
        return 0
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


def cpu_children() -> float:
    """CPU seconds of the finished child processes (the server, still running, is not among them)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


CPU: dict[Path, float] = {}  # out folder -> CPU seconds of its last build


def build(spec: Path, out: Path, cache: Path) -> tuple[float, dict, float]:
    """One `specc build` in a child process: (wall seconds, manifest, peak RSS in MB)."""
    env = {**os.environ, "SPECC_CACHE": str(cache)}
    t0 = time.perf_counter()
    cpu0 = cpu_children()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-m", "specc", "build", str(spec), "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not (out / "manifest.json").is_file():
        sys.exit(f"build failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    CPU[out] = cpu_children() - cpu0
    rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(proc.stdout.strip()[-1500:], flush=True)
    return wall, json.loads((out / "manifest.json").read_text()), rss


def plan(spec: Path, cache: Path) -> tuple[float, dict]:
    """`specc plan --json` in a child process: (wall seconds, the plan)."""
    env = {**os.environ, "SPECC_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "specc", "plan", str(spec), "--json"], env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"plan failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=25_000_000)
    ap.add_argument("--principles", type=int, default=58)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch", action="store_true", help="Build through the Batch API (generator.batch).")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=Path, default=None, help="Work in this folder and keep it (default: a temp dir).")
    args = ap.parse_args()
    if args.serve:
        return serve()

    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        url = server.stdout.readline().strip()
        work = args.keep or Path(tempfile.mkdtemp(prefix="specc-scale-"))
        work.mkdir(parents=True, exist_ok=True)
        spec = work / "spec.yaml"
        spec.write_text(json.dumps(make_spec(args.principles, args.budget, url, args.concurrency, args.batch), indent=1))
        cache = work / "cache.sqlite"
        out = work / "out"
        plan_s, planned = plan(spec, cache)
        print(f"plan: {planned['calls']:,} calls ({planned['topup_estimate']['tasks']:,} of them an estimated top-up), "
              f"{planned['facets']:,} facets, {planned['doc_types']:,} document types, in {plan_s:.1f} s", flush=True)
        wall, manifest, rss = build(spec, out, cache)
        cpu = CPU[out]
        # An unchanged rebuild into the same output. Its manifest is the first build's (an up-to-date
        # output is not rewritten), so its calls are counted in the cache.
        stored = cache_entries(cache)
        noop_s, _, _ = build(spec, out, cache)
        noop_calls = cache_entries(cache) - stored
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    calls = manifest["llm"]["calls"]
    fills = [q["achieved"] / q["target"] for q in manifest["quotas"] if q["target"] > 0]
    fill = manifest["tokens"]["total"] / args.budget
    short = sorted((q["achieved"] / q["target"], q["principle_id"], q["kind"])
                   for q in manifest["quotas"] if q["target"] > 0)[:3]
    print(f"principles {args.principles}, budget {args.budget:,} tokens, rounds {manifest.get('rounds')}")
    if "batch" in manifest["llm"]:
        b = manifest["llm"]["batch"]
        print(f"batch path: {b['waves']} waves, {b['batches']} batches, cost factor {b.get('price_factor')}")
    print("least filled: " + ", ".join(f"{p}/{k} {f:.2f}" for f, p, k in short))
    print(f"budget_fill={fill:.3f} worst_principle_kind={min(fills):.3f} calls={calls} wall_s={wall:.1f} "
          f"calls_per_s={calls / wall:.1f} cpu_ms_per_call={1000 * cpu / max(calls, 1):.2f} peak_rss_mb={rss:.0f} noop_s={noop_s:.1f} "
          f"noop_calls={noop_calls} plan_calls={planned['calls']} plan_s={plan_s:.1f} "
          f"rounds={manifest.get('rounds')}")
    print(f"noop_s={noop_s:.1f} noop_calls={noop_calls}")


if __name__ == "__main__":
    main()
