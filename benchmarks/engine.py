"""Engine scheduling benchmark: a two-stage DAG against the fake server, with 50-300 ms per call.

Compares the engine's wall time with the ideal (sum of server latencies / concurrency)
and with a stage-barrier schedule of the same work (all ideas, then all documents).
Also reports the client's CPU time per call. The last line is
``vs_ideal=<wall/ideal> vs_barrier=<wall/barrier>``.

With ``--rate-limit-rate R`` the server answers that share of requests with HTTP 429 and
``Retry-After: --retry-after`` seconds, as a rate-limited API does; the ideal then counts only the
successful calls, so the gap shows what backing off costs in throughput.

With ``--instant`` the server answers at once and only the DAG runs: the client's CPU per call
is then the engine's, the provider's and the cache's own cost at the rate a build reaches
(the last line is ``cpu_ms_per_call=<ms>``), e.g. ``--instant --ideas 3000 --concurrency 64``.

    python benchmarks/engine.py [--ideas 150] [--fan-out 6] [--concurrency 32] [--rate-limit-rate 0.2] [--instant]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakeserver import latency_for  # noqa: E402

from specc.generate.cache import Cache  # noqa: E402
from specc.generate.engine import Engine  # noqa: E402
from specc.generate.base import SamplingParams  # noqa: E402
from specc.generate.openai import OpenAILLM  # noqa: E402
from specc.records import Task  # noqa: E402

LATENCY = (0.05, 0.3)


def make_task(llm_id: str, stage: str, text: str) -> Task:
    return Task(stage, "bench", llm_id, ({"role": "user", "content": text},), SamplingParams(max_tokens=256), "bench")


def fan_out(llm_id: str, t: Task, text: str, n: int) -> list[Task]:
    return [make_task(llm_id, "document", f"Write document {j} from this idea: {text[:60]}") for j in range(n)]


async def dag(llm: OpenAILLM, cache: Cache, ideas: list[Task], n: int, concurrency: int):
    """Follow-ups are scheduled the moment their idea is back. Returns (wall, tasks done, client CPU, retries)."""
    done: list[Task] = []

    def on_result(t: Task, g):
        done.append(t)
        return fan_out(llm.id, t, g.text, n) if t.stage == "ideas" else None

    engine = Engine(llm, cache, concurrency=concurrency, max_retries=50)
    cpu, t0 = time.process_time(), time.perf_counter()
    try:
        stats = await engine.run(ideas, on_result)
    finally:
        await llm.aclose()  # its connections belong to this event loop
    return time.perf_counter() - t0, done, time.process_time() - cpu, stats.retries


async def barrier(llm: OpenAILLM, cache: Cache, ideas: list[Task], n: int, concurrency: int) -> float:
    """The same work, one stage at a time: no document starts before every idea is back."""
    docs: list[Task] = []
    engine = Engine(llm, cache, concurrency=concurrency, max_retries=50)
    t0 = time.perf_counter()
    try:
        await engine.run(ideas, lambda t, g: docs.extend(fan_out(llm.id, t, g.text, n)) and None)
        await engine.run(docs, lambda t, g: None)
    finally:
        await llm.aclose()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ideas", type=int, default=150)
    ap.add_argument("--fan-out", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of requests answered with HTTP 429")
    ap.add_argument("--retry-after", type=float, default=1.0, help="seconds each 429 asks the client to wait")
    ap.add_argument("--instant", action="store_true", help="no server latency: measure the client's CPU per call")
    args = ap.parse_args()
    latency = (0.0, 0.0) if args.instant else LATENCY

    cmd = [sys.executable, str(ROOT / "tests" / "fakeserver.py"), "--port", "0", "--latency", "%g,%g" % latency]
    if args.rate_limit_rate:
        cmd += ["--fault-rate", str(args.rate_limit_rate), "--faults", "429", "--retry-after", str(args.retry_after)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        llm = OpenAILLM("fake-model", base_url=url, timeout=30)
        ideas = [make_task(llm.id, "ideas", f"Idea {i}: a situation that tests honesty") for i in range(args.ideas)]
        with tempfile.TemporaryDirectory() as tmp:
            with Cache(Path(tmp) / "warmup.sqlite") as c:  # imports, server threads, code paths
                warm = [make_task(llm.id, "ideas", f"warm-up {i}") for i in range(32)]
                asyncio.run(dag(llm, c, warm, 1, args.concurrency))
            with Cache(Path(tmp) / "dag.sqlite") as c:
                wall, done, cpu, retries = asyncio.run(dag(llm, c, ideas, args.fan_out, args.concurrency))
            if not args.instant:
                with Cache(Path(tmp) / "barrier.sqlite") as c:
                    wall_barrier = asyncio.run(barrier(llm, c, ideas, args.fan_out, args.concurrency))
    finally:
        server.terminate()
        server.stdout.close()
        server.wait(timeout=10)

    calls = len(done)
    if args.instant:
        print(f"tasks            {calls} ({args.ideas} ideas x {args.fan_out} documents each + the ideas)")
        print(f"concurrency      {args.concurrency}")
        print(f"wall             {wall:8.2f} s   ({calls / wall:.0f} calls/s)")
        print(f"cpu_ms_per_call={1000 * cpu / calls:.3f}")
        return
    total_latency = sum(latency_for([dict(m) for m in t.messages], LATENCY) for t in done)
    ideal = total_latency / args.concurrency
    print(f"tasks            {calls} ({args.ideas} ideas x {args.fan_out} documents each + the ideas)")
    print(f"concurrency      {args.concurrency}")
    if args.rate_limit_rate:
        print(f"rate limited     {args.rate_limit_rate:.0%} of requests, Retry-After {args.retry_after:g} s "
              f"({retries} retries in the DAG run)")
    print(f"sum of latency   {total_latency:8.2f} s")
    print(f"ideal            {ideal:8.2f} s   (sum of latency / concurrency)")
    print(f"DAG (engine)     {wall:8.2f} s   {wall / ideal:5.3f} x ideal")
    print(f"stage barrier    {wall_barrier:8.2f} s   {wall_barrier / ideal:5.3f} x ideal")
    print(f"client CPU/call  {1000 * cpu / calls:8.2f} ms")
    print(f"vs_ideal={wall / ideal:.3f} vs_barrier={wall / wall_barrier:.3f}")


if __name__ == "__main__":
    main()
