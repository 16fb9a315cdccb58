"""Run a small two-stage DAG against an endpoint; the SIGKILL test kills and restarts this script.

Prints one line per finished task ("result <stage> <cached>") and a final "stats <json>".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.generate.base import SamplingParams
from specc.generate.openai import OpenAILLM
from specc.records import Task

FAN_OUT = 3


def task(llm_id: str, stage: str, text: str) -> Task:
    return Task(stage, "resume", llm_id, ({"role": "user", "content": text},), SamplingParams(max_tokens=64), "t1")


def first_stage(llm_id: str, n: int) -> list[Task]:
    return [task(llm_id, "ideas", f"idea {i}") for i in range(n)]


def follow_ups(llm_id: str, t: Task) -> list[Task]:
    if t.stage != "ideas":
        return []
    return [task(llm_id, "document", f"{t.messages[0]['content']} -> document {j}") for j in range(FAN_OUT)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    llm = OpenAILLM("fake-model", base_url=args.url, timeout=10)

    def on_result(t: Task, g) -> list[Task]:
        print(f"result {t.stage} {int(g.cached)}", flush=True)
        return follow_ups(llm.id, t)

    with Cache(args.cache) as cache:
        stats = Engine(llm, cache, concurrency=args.concurrency).run_sync(first_stage(llm.id, args.n), on_result)
    print("stats " + json.dumps(stats.to_dict()), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
