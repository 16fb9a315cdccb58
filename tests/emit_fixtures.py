"""Synthetic records, a spec and build_info for the emit, hub and output-command tests."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from specc.records import Record
from specc.spec.schema import Spec

PRINCIPLES = ("honesty", "care", "privacy")
GENRES = ("FAQ", "news report", "forum thread")
DEMO_KINDS = ("direct", "edge_case", "multi_turn")
WORDS = "the assistant explains why honesty matters and what a careful answer looks like".split()


def make_spec(**output) -> Spec:
    return Spec.model_validate(
        {
            "specc": 1,
            "name": "demo-spec",
            "version": "1.2.0",
            "description": "Principles for a careful assistant.",
            "assistant": {"name": "Aria", "developer": "Example Labs"},
            "principles": [
                {"id": pid, "title": f"Title of {pid} | with a pipe", "statement": f"Aria values {pid}."}
                for pid in PRINCIPLES
            ],
            "corpus": {"seed": 7, "budget": {"tokens": 50_000}},
            "output": {"hub": {"repo": "example/demo-spec", "private": True}, **output},
        }
    )


def make_records(n_docs: int = 60, n_demos: int = 30, seed: int = 0) -> list[Record]:
    """Documents and demonstrations spread over the principles, in principle-sorted order."""
    rng = random.Random(seed)
    recs = []
    for i in range(n_docs):
        pid = PRINCIPLES[i % len(PRINCIPLES)]
        text = f"Document {i} about {pid}. " + " ".join(rng.choice(WORDS) for _ in range(40 + i % 50))
        recs.append(
            Record(
                kind="document",
                principle_id=pid,
                text=text,
                genre=GENRES[i % len(GENRES)],
                tokens=len(text.split()),
                meta={
                    "model": "openai:gpt-test",
                    "template_hash": "t" * 12,
                    "task_key": f"task-{i}",
                    "spec_version": "1.2.0",
                    "idea": {"title": f"idea {i}", "audience": "students"},
                    "round": 1,
                },
            )
        )
    for i in range(n_demos):
        pid = PRINCIPLES[i % len(PRINCIPLES)]
        messages = [
            {"role": "user", "content": f"Question {i} about {pid}?"},
            {"role": "assistant", "content": "Answer: " + " ".join(rng.choice(WORDS) for _ in range(20))},
        ]
        recs.append(
            Record(
                kind="demonstration",
                principle_id=pid,
                messages=messages,
                demo_kind=DEMO_KINDS[i % len(DEMO_KINDS)],
                tokens=30 + i,
                meta={
                    "model": "openai:gpt-test",
                    "template_hash": "r" * 12,
                    "task_key": f"reply-{i}",
                    "spec_version": "1.2.0",
                    "idea": f"scenario {i}",
                    "judge": {"verdict": "pass", "reason": f"follows {pid}"},
                },
            )
        )
    recs.sort(key=lambda r: r.principle_id)
    return recs


def build_info() -> dict:
    return {
        "llm": {
            "provider": "openai",
            "model": "gpt-test",
            "calls": 120,
            "cached": 20,
            "failed": 2,
            "input_tokens": 40_000,
            "output_tokens": 30_000,
            "cost_usd": 0.125,
        },
        "dropped": {"filters:too_short": 4, "dedup:near_duplicate": 3},
        "dropped_by_principle": {"care": {"filters:too_short": 4}, "honesty": {"dedup:near_duplicate": 3}},
        "quotas": [
            {"principle_id": pid, "kind": kind, "target": 5000, "achieved": 0, "records": 0}
            for pid in PRINCIPLES
            for kind in ("document", "demonstration")
        ],
        "rounds": 2,
        "dedup": {"threshold": 0.8},
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:10:00+00:00",
    }


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tree_digest(root: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in tree_files(root).items()}
