"""Embedded-model benchmark: the support example's first prompts through the engine and llama.cpp, per thread setting.

Each setting runs in its own process (OpenMP reads its environment once, when llama.cpp loads),
the settings alternate for ``--rounds`` rounds, and every run generates the same tokens (fixed
seeds, capped ``max_tokens``). Reported per setting: output tokens per second of wall time and
CPU seconds (user + system) per wall second; a thread pool that spins while it waits shows as
CPU well above what the tokens need. "unset" is how specc ran llama.cpp before it set
OMP_WAIT_POLICY=PASSIVE (libgomp spins a while before it sleeps); on a busy 2-core machine it ran
at a quarter of the passive speed.

    python benchmarks/local.py [--tasks 8] [--max-tokens 160] [--rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    # name: (n_threads or None for the provider's default, extra environment)
    "default": (None, {}),
    "threads=2 unset": (2, {"OMP_WAIT_POLICY": ""}),  # libgomp's own default: spin a while, then sleep
    "threads=2 spinning": (2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    "threads=2 passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads=1": (1, {}),
}


def child(n_threads: int | None, n_tasks: int, max_tokens: int) -> dict:
    """One run in this process; returns what it measured."""
    from specc.generate.cache import Cache
    from specc.generate.engine import Engine
    from specc.generate.local import LocalLLM
    from specc.spec.load import load_spec
    from specc.stages import Context, Pipeline

    spec = load_spec(ROOT / "examples" / "support" / "spec.yaml")
    llm = LocalLLM(spec.generator.model) if n_threads is None else LocalLLM(spec.generator.model, n_threads=n_threads)
    tasks = Pipeline(Context.create(spec, llm.id)).first_tasks(0)[:n_tasks]
    tasks = [dataclasses.replace(t, params=dataclasses.replace(t.params, max_tokens=max_tokens)) for t in tasks]
    tokens = {"in": 0, "out": 0}

    def on_result(t, g):
        tokens["in"] += g.input_tokens
        tokens["out"] += g.output_tokens

    with tempfile.TemporaryDirectory() as tmp, Cache(Path(tmp) / "c.sqlite") as cache:
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        Engine(llm, cache, concurrency=spec.generator.concurrency).run_sync(tasks, on_result)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall": wall,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "in_tokens": tokens["in"],
        "out_tokens": tokens["out"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of " + ", ".join(SETTINGS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        n_threads = None if args.child == "default" else int(args.child)
        print(json.dumps(child(n_threads, args.tasks, args.max_tokens)))
        return

    names = args.settings.split(",")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            threads, env = SETTINGS[name]
            cmd = [sys.executable, __file__, "--child", "default" if threads is None else str(threads),
                   "--tasks", str(args.tasks), "--max-tokens", str(args.max_tokens)]
            out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'setting':<20} {'out tok':>8} {'tok/s':>8} {'CPU/wall':>9}   (median of {args.rounds})")
    for name, rs in runs.items():
        tps = statistics.median(r["out_tokens"] / r["wall"] for r in rs)
        cpu = statistics.median((r["user"] + r["sys"]) / r["wall"] for r in rs)
        print(f"{name:<20} {rs[0]['out_tokens']:>8} {tps:>8.1f} {cpu:>9.2f}")


if __name__ == "__main__":
    main()
