"""The whole curation pass on a synthetic corpus with planted junk, duplicates and eval overlaps."""

from __future__ import annotations

import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from specc.curate import CurateResult, Curator
from specc.errors import InputError
from specc.records import Record
from specc.spec.schema import Spec
from specc.tokens import count_messages, get_tokenizer

_p = Path(__file__).parent / "fixtures" / "curate" / "synth.py"
_s = importlib.util.spec_from_file_location("curate_synth", _p)
synth = importlib.util.module_from_spec(_s)
_s.loader.exec_module(synth)

GENRES = ["news report", "FAQ", "blog post", "short story"]
KINDS = ["direct", "indirect", "edge_case"]


def make_spec(tmp_path: Path, files: list[str] | None = None) -> Spec:
    spec = Spec.model_validate(
        {
            "specc": 1,
            "name": "t",
            "assistant": {"name": "Ava"},
            "principles": [
                {
                    "id": "honesty",
                    "title": "Honesty",
                    "statement": "Ava says what it believes is true.",
                    "examples": [
                        {
                            "user": "Tell me honestly whether the bridge on the old river road is safe to cross "
                            "tonight",
                            "good": "I don't know its current state.",
                            "holdout": True,
                        }
                    ],
                },
                {"id": "care", "title": "Care", "statement": "Ava is careful with risky requests.", "weight": 2},
            ],
            "corpus": {"budget": {"tokens": 200_000}, "decontamination": {"files": files or []}},
        }
    )
    spec._source = tmp_path / "spec.yaml"
    return spec


def demo(rng: random.Random, pid: str, user: str | None = None) -> Record:
    user = user or " ".join(synth.sentence(rng, 10, 20) for _ in range(2))
    reply = " ".join(synth.sentence(rng) for _ in range(rng.randint(6, 16)))
    return Record(
        kind="demonstration",
        principle_id=pid,
        demo_kind=rng.choice(KINDS),
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
    )


def build_corpus(tmp_path: Path):
    rng = random.Random(42)
    eval_item = " ".join(synth.sentence(rng, 20, 20) for _ in range(2))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"prompt": eval_item}) + "\n")
    planted: Counter[str] = Counter()
    records: list[Record] = []

    def doc(pid: str, text: str, **meta) -> Record:
        return Record(kind="document", principle_id=pid, genre=rng.choice(GENRES), text=text, meta=meta)

    for pid, n_docs, n_demos in (("honesty", 130, 110), ("care", 240, 200)):
        records += [doc(pid, synth.document(rng, rng.randint(250, 650))) for _ in range(n_docs)]
        records += [demo(rng, pid) for _ in range(n_demos)]
    originals = list(records)

    junk = {
        "filter:too_short": lambda t: "Ava is kind.",
        "filter:truncated": lambda t: t[:-1] + " and then the long sentence simply goes on without any ending at all",
        "filter:meta_text": lambda t: "Here is a blog post about Ava:\n\n" + t,
        "filter:markup": lambda t: "<doc>\n" + t + "\n</doc>",
        "filter:planning_notes": lambda t: "Outline: intro, body, end.\n\n" + t,
        "filter:placeholder": lambda t: t + " Contact [Your Name] for details.",
        "filter:no_assistant_name": lambda t: t.replace("Ava", "The helper"),
    }
    for reason, make in junk.items():
        for _ in range(3):
            records.append(doc("care", make(synth.document(rng, 300))))
            planted[reason] += 1
    records.append(doc("care", synth.document(rng, 300), finish_reason="length"))
    planted["filter:truncated"] += 1
    lone = [{"role": "user", "content": "hi there"}]
    records.append(Record(kind="demonstration", principle_id="care", messages=lone))
    planted["filter:no_assistant_turn"] += 1

    docs = [r for r in originals if r.kind == "document"]
    demos = [r for r in originals if r.kind == "demonstration"]
    for r in docs[:8]:  # exact duplicates after normalisation
        records.append(doc(r.principle_id, "  " + r.text.upper().replace(".", " !") + " "))
        planted["exact_dedup:duplicate"] += 1
    for r in docs[8:20]:  # near duplicates, Jaccard ~0.97
        records.append(doc(r.principle_id, synth.mutate(rng, r.text, 0.005)))
        planted["near_dedup:near_duplicate"] += 1
    for r in demos[:4]:  # the same prompt answered again
        records.append(demo(rng, r.principle_id, user=r.first_user_turn))
        planted["exact_dedup:duplicate_prompt"] += 1
    for i in range(3):  # eval overlap inside a document
        words = synth.document(rng, 300).split()
        words[40:40] = eval_item.split()[5:20]
        records.append(doc("honesty", " ".join(words)))
        planted["decontam:eval_overlap"] += 1
    records.append(  # a holdout example used as a prompt
        demo(rng, "honesty", user="tell me honestly whether the bridge on the old river road is safe to cross tonight?")
    )
    planted["decontam:eval_overlap"] += 1
    return records, planted


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curate")
    records, planted = build_corpus(tmp)
    spec = make_spec(tmp, ["eval.jsonl"])
    result = Curator(spec).run(records)
    return spec, records, planted, result


def test_junk_duplicates_and_overlaps_are_gone_with_reasons(corpus):
    spec, records, planted, result = corpus
    assert isinstance(result, CurateResult)
    for key, n in planted.items():
        assert result.dropped[key] == n, key
    non_budget = {k: v for k, v in result.dropped.items() if not k.startswith("budget:")}
    assert non_budget == dict(planted)
    assert result.decontam_sources == {"eval.jsonl": 3, "holdout examples": 1}
    by_principle = Counter()
    for counts in result.dropped_by_principle.values():
        by_principle.update(counts)
    assert by_principle == result.dropped
    assert len(result.kept) + sum(result.dropped.values()) == len(records)


def test_budget_is_met_within_three_percent(corpus):
    spec, records, planted, result = corpus
    total = sum(r.tokens for r in result.kept)
    assert abs(total - 200_000) <= 0.03 * 200_000
    assert len(result.quotas) == 4 and result.shortfall == {}
    for q in result.quotas:
        achieved = sum(r.tokens for r in result.kept if (r.principle_id, r.kind) == (q["principle_id"], q["kind"]))
        assert achieved == q["achieved"]
        assert abs(achieved - q["target"]) <= 0.03 * q["target"], q
    tok = get_tokenizer("cl100k_base")
    for r in result.kept[:: max(1, len(result.kept) // 20)]:  # tokens were counted the documented way
        expected = tok.count(r.text) if r.kind == "document" else count_messages(tok, r.messages)
        assert r.tokens == expected
    params = result.dedup_params
    assert params["threshold"] == 0.8 and params["num_perm"] == 128
    assert params["bands"] * params["rows"] <= 128 and 0 < params["p_detect_at_threshold"] < 1


def test_result_is_deterministic_and_serialisable(corpus, tmp_path):
    spec, records, planted, result = corpus
    shuffled = [Record(**{**r.__dict__, "tokens": 0}) for r in records]
    random.Random(7).shuffle(shuffled)
    again = Curator(spec).run(shuffled)
    assert [r.id for r in again.kept] == [r.id for r in result.kept]
    assert again.to_dict() == result.to_dict()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kept"] == len(result.kept) and data["shortfall"] == []
    assert {(q["principle_id"], q["kind"]) for q in data["quotas"]} == {
        (p, k) for p in ("honesty", "care") for k in ("document", "demonstration")
    }


def test_shortfall_when_the_pool_is_too_small(tmp_path):
    rng = random.Random(1)
    records = [
        Record(kind="document", principle_id="care", genre="FAQ", text=synth.document(rng, 400)) for _ in range(20)
    ]
    records += [demo(rng, "honesty") for _ in range(5)]
    result = Curator(make_spec(tmp_path)).run(records)
    assert set(result.shortfall) == {
        ("honesty", "document"),
        ("honesty", "demonstration"),
        ("care", "document"),
        ("care", "demonstration"),
    }
    q = {(x["principle_id"], x["kind"]): x for x in result.quotas}
    care = q[("care", "document")]
    assert result.shortfall[("care", "document")] == care["target"] - care["achieved"]
    assert care["records"] == 20
    assert result.to_dict()["shortfall"][0]["missing_tokens"] > 0


def test_dedup_can_be_disabled_and_bad_eval_file_fails_at_construction(tmp_path):
    spec = make_spec(tmp_path).model_copy(deep=True)
    data = spec.model_dump()
    data["corpus"]["dedup"]["enabled"] = False
    off = Spec.model_validate(data)
    off._source = tmp_path / "spec.yaml"
    rng = random.Random(3)
    text = synth.document(rng, 300)
    recs = [Record(kind="document", principle_id="care", text=text, id=f"r{i}") for i in range(2)]
    result = Curator(off).run(recs)
    assert len(result.kept) == 2 and result.dedup_params["enabled"] is False
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        Curator(make_spec(tmp_path, ["bad.jsonl"]))


def test_forked_analysis_and_one_process_give_the_same_result(corpus, monkeypatch):
    import multiprocessing

    import specc.curate as curate
    import specc.curate.base as base

    spec, records, planted, result = corpus
    fresh = [Record(**{**r.__dict__, "tokens": 0}) for r in records]
    monkeypatch.setattr(curate, "_POOL_MIN_RECORDS", 50)  # the small corpus goes to worker processes
    monkeypatch.setattr(curate, "_CHUNK", 64)  # and each worker takes several chunks
    spawned = []
    real = base.map_spans

    def spy(fn, items, *, min_items):
        spawned.append(len(items) >= min_items and base.workers() > 1 and base.process_context().get_start_method())
        return real(fn, items, min_items=min_items)

    monkeypatch.setattr(base, "map_spans", spy)
    # The suite's earlier tests leave server threads alive, which rules out forking in a build; the
    # workers here compute and return, touching no lock of those threads.
    monkeypatch.setattr(base, "process_context", lambda: multiprocessing.get_context("fork"))
    forked = Curator(spec).run(fresh)
    assert spawned == ["fork"] or base.workers() < 2
    assert [r.id for r in forked.kept] == [r.id for r in result.kept]
    assert [r.tokens for r in forked.kept] == [r.tokens for r in result.kept]
    assert forked.to_dict() == result.to_dict()
    assert [(r.id, why) for r, why in forked.rejected] == [(r.id, why) for r, why in result.rejected]


def test_a_second_round_analyses_only_its_new_records(tmp_path, monkeypatch):
    import specc.curate.base as base

    records, _ = build_corpus(tmp_path)
    spec = make_spec(tmp_path, ["eval.jsonl"])
    first, later = records[: len(records) // 2], records[len(records) // 2 :]
    curator = Curator(spec)
    curator.run(first)
    analysed = []
    real = base.map_spans
    monkeypatch.setattr(base, "map_spans", lambda fn, items, *, min_items: analysed.append(len(items)) or real(
        fn, items, min_items=min_items))
    again = curator.run(first + later)
    seen = {r.id for r in first}
    assert analysed == [sum(r.id not in seen for r in later)]
    clean = Curator(spec).run([Record(**{**r.__dict__, "tokens": 0}) for r in records])
    assert [r.id for r in again.kept] == [r.id for r in clean.kept]
    assert again.to_dict() == clean.to_dict()
