"""A 200k-token build against the fake endpoint lands on its budget; junk and near-duplicates are removed."""

from __future__ import annotations

import hashlib
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import VOCAB, StageResponder, _name, _pid, _rng  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.emit import read_manifest  # noqa: E402
from specc.plan.quotas import compute_quotas  # noqa: E402
from specc.spec.load import load_spec  # noqa: E402

JUNK = [
    # Caught when parsed (a placeholder): the stage retries once, showing the model its error.
    "Here is a draft: [Name] will review the policy with [Company] soon. Lorem ipsum dolor sit amet.",
    # Parses, but the quality filters drop it.
    "As an AI language model, I cannot write an article about {name}, but I am happy to help with "
    "something else. Please let me know what else you would like me to do for you today, {salt}. I can "
    "summarise the principle, list its main points, suggest a title, or outline the sections such an "
    "article might have if you would like me to try a different approach to the request.",
    "{name} is good.",
]


class MessyResponder(StageResponder):
    """Documents and replies of varied length; every 7th document is junk, every 5th a near-copy."""

    def __init__(self):
        super().__init__()
        self.n_docs = 0
        self.planted_junk = 0
        self.planted_dups = 0

    def _text(self, rng: random.Random, name: str, sentences: int) -> str:
        return " ".join(f"{name} {' '.join(rng.choice(VOCAB) for _ in range(rng.randint(8, 18)))}." for _ in range(sentences))

    def document(self, body: dict, text: str) -> str:
        self.n_docs += 1
        name = _name(text)
        if self.n_docs % 7 == 0:
            self.planted_junk += 1
            junk = JUNK[(self.n_docs // 7) % len(JUNK)].format(name=name, salt=_rng(body).choice(VOCAB))
            return f"<document>\n{junk}\n</document>"
        if self.n_docs % 5 == 0:
            # The same long text for every 5th document of a principle, one word changed: a near-duplicate.
            base = random.Random(hashlib.sha256(_pid(text).encode()).hexdigest())
            words = self._text(base, name, 40).split()
            words[len(words) // 2] = _rng(body).choice(VOCAB)
            self.planted_dups += 1
            return "<document>\n" + " ".join(words) + "\n</document>"
        rng = _rng(body)
        return f"<document>\n{self._text(rng, name, rng.randint(10, 60))}\n</document>"

    def reply(self, body: dict, text: str) -> str:
        rng = _rng(body)
        return self._text(rng, "I", rng.randint(4, 30))


def test_200k_budget_lands_within_3_percent_and_junk_is_gone(tmp_path):
    d = spec_dict(
        4,
        budget={"tokens": 200_000},
        documents={"genres": ["FAQ", "news report", "op-ed", "case study", "forum thread", "interview"],
                   "ideas_per_genre": 20, "max_tokens": 1500},
        demonstrations={"kinds": ["direct", "indirect", "edge_case", "adversarial"], "per_kind": 20, "max_tokens": 600},
        rounds=4,
    )
    for p, w in zip(d["principles"], (1.0, 2.0, 1.0, 0.5)):
        p["weight"] = w
    path = write_spec(tmp_path / "spec.json", d)
    responder = MessyResponder()
    with FakeServer(responder) as server:
        run_build(path, out=tmp_path / "out", provider="openai", model="fake-model", base_url=server.url,
                  cache_path=tmp_path / "cache.sqlite", quiet=True)
    m = read_manifest(tmp_path / "out")

    assert abs(m["tokens"]["total"] - 200_000) <= 0.03 * 200_000, m["tokens"]
    quotas = compute_quotas(load_spec(path))
    achieved = {(q["principle_id"], q["kind"]): q["achieved"] for q in m["quotas"]}
    for key, target in quotas.items():
        assert abs(achieved[key] - target) <= 0.03 * target, (key, achieved[key], target)

    dropped = m["dropped"]
    assert responder.planted_junk and responder.planted_dups
    assert dropped.get("filter:refusal", 0) + dropped.get("filter:meta_text", 0) > 0, dropped
    assert dropped.get("filter:too_short", 0) > 0, dropped
    assert dropped.get("near_dedup:near_duplicate", 0) + dropped.get("exact_dedup:duplicate", 0) >= responder.planted_dups - 8
    from specc.emit import iter_rows

    texts = [row["text"] for row in iter_rows(tmp_path / "out", "documents")]
    assert len(texts) == m["counts"]["documents"]
    assert not any("language model" in t or "[Name]" in t or t.endswith(" is good.") and len(t) < 40 for t in texts)
    # At most one survivor of each principle's near-duplicate cluster.
    from specc.curate.normalize import normalize

    heads = [normalize(t)[:200] for t in texts]
    assert len(heads) - len(set(heads)) <= 4


def test_a_small_budget_fills_every_principle_and_kind_as_planned(tmp_path):
    """The scale benchmark's property at a size a test can afford: 24 principles shaped like an imported
    spec (uneven sub-rules and weights), every principle x kind at 0.90 of its quota or more, the budget
    at 0.97 or more, at most one top-up round, and the plan's call count within 15%."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import scale

    from specc.plan import make_plan
    from specc.stages import llm_id

    class Sized(StageResponder):  # documents as long as their brief asks, replies of varied length
        def document(self, body, text):
            words = int(re.search(r"Length: about (\d+) words", text).group(1))
            rng = _rng(body)
            return "<document>\n" + " ".join(f"{_name(text)} {' '.join(rng.choice(VOCAB) for _ in range(11))}."
                                             for _ in range(max(4, words // 12))) + "\n</document>"

        def reply(self, body, text):
            rng = _rng(body)
            return " ".join(" ".join(rng.choice(VOCAB) for _ in range(12)) + "." for _ in range(rng.randint(6, 30)))

    with FakeServer(Sized()) as server:
        d = scale.make_spec(24, 120_000, server.url, 16)
        d["corpus"]["documents"] = {"max_tokens": 600}
        d["corpus"]["demonstrations"] = {"max_tokens": 400}
        path = write_spec(tmp_path / "spec.json", d)
        spec = load_spec(path)
        plan = make_plan(spec, model=llm_id(spec))
        r = run_build(path, out=tmp_path / "out", cache_path=tmp_path / "cache.sqlite", quiet=True)
    m = read_manifest(tmp_path / "out")
    assert m["tokens"]["total"] >= 0.97 * 120_000 and r.rounds <= 1
    for q in m["quotas"]:
        assert q["achieved"] >= 0.9 * q["target"], q
    assert abs(plan.calls - r.llm["calls"]) <= 0.15 * r.llm["calls"], (plan.calls, r.llm["calls"])
    # the facets a principle has calls for are covered by its kept rows
    for pid, p in m["principles"].items():
        d = p["diversity"]
        assert d["facets_covered"] >= min(d["facets"], plan.principles[pid]["ideas_calls"]), (pid, d)
