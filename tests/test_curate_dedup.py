"""Normalisation, vectorised MinHash (bit-identical to datasketch), exact and near dedup."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from specc.curate.dedup import ExactDedup, NearDedup
from specc.curate.minhash import lean_minhash, lsh_params, p_detect, shingle_hash32, signatures
from specc.curate.normalize import ngram_hashes, normalize, span_hash_bytes
from specc.records import Record

_p = Path(__file__).parent / "fixtures" / "curate" / "synth.py"
_s = importlib.util.spec_from_file_location("curate_synth", _p)
synth = importlib.util.module_from_spec(_s)
_s.loader.exec_module(synth)


def doc(text: str, pid: str = "p", rid: str = "") -> Record:
    return Record(kind="document", principle_id=pid, text=text, id=rid)


def test_normalize():
    assert normalize("  Héllo,\tWORLD!!  It's\n\n ﬁne—really. ") == "héllo world its finereally"
    assert normalize("ＡＢＣ １２３") == "abc 123"  # NFKC folds full-width forms
    assert normalize("Straße") == "strasse"  # casefold, not lower
    assert normalize("...") == ""
    # The ASCII fast path and the Unicode path agree on ASCII input.
    ascii_text = "Hello, world! snake_case (x) 3.14 -- 'quoted' \"double\" a/b \x00bell\x07 \x1f tab\x7f"
    assert normalize(ascii_text) == normalize(ascii_text + " é")[:-2]
    assert all(normalize(chr(c)) == normalize(chr(c) + "é")[:-1] for c in range(128))


def test_ngram_hashes_cover_every_ngram_and_short_texts():
    texts = ["a b c d e f", "x y", "", "a b c d e f"]
    h, off = ngram_hashes(texts, 5)
    assert off.tolist() == [0, 2, 3, 3, 5]
    expected = [span_hash_bytes(s.encode()) for s in ["a b c d e", "b c d e f", "x y"]]
    assert h[:3].tolist() == expected
    assert h[3:].tolist() == h[:2].tolist()
    empty_h, empty_off = ngram_hashes([""], 5)
    assert len(empty_h) == 0 and empty_off.tolist() == [0, 0]


def test_signatures_are_bit_identical_to_datasketch(monkeypatch):
    import specc.curate.minhash as mh

    monkeypatch.setattr(mh, "_BLOCK_SHINGLES", 150)  # several blocks, and texts bigger than one
    rng = random.Random(3)
    texts = [normalize(synth.document(rng, n)) for n in (1, 3, 4, 5, 6, 200, 700)] + ["", "naïve café", "x"]
    sig = signatures(texts, num_perm=64, ngram=5, seed=7)

    def h32(b: bytes) -> int:
        return int(shingle_hash32(np.array([span_hash_bytes(b)], dtype=np.uint64))[0])

    for text, row in zip(texts, sig):
        words = text.split()
        shingles = [" ".join(words[i : i + 5]) for i in range(len(words) - 4)] or ([text] if words else [])
        ref = MinHash(num_perm=64, seed=7, hashfunc=h32)
        ref.update_batch([s.encode() for s in shingles])
        assert np.array_equal(ref.hashvalues, row), text[:40]
        if words:
            lean = lean_minhash(row, seed=7)
            assert isinstance(lean, LeanMinHash) and lean.jaccard(LeanMinHash(ref)) == 1.0


def test_worker_processes_and_raw_texts_give_the_same_signatures(monkeypatch):
    import specc.curate.minhash as mh

    rng = random.Random(4)
    raw = [synth.document(rng, rng.randint(1, 400)) for _ in range(700)] + ["", "..."]
    texts = [normalize(t) for t in raw]
    serial = signatures(texts, 128, 5, workers=1)
    monkeypatch.setattr(mh, "_TASK_TEXTS", 100)  # several tasks on a small input
    assert np.array_equal(serial, signatures(raw, 128, 5, workers=2, raw=True))
    assert np.array_equal(serial, signatures(raw, 128, 5, workers=1, raw=True))
    assert (serial[-2:] == mh.EMPTY).all() and (serial[:-2] != mh.EMPTY).any(axis=1).all()


def test_lsh_params_match_datasketch_and_detection_probability():
    b, r = lsh_params(0.8, 128, 0.5)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert (b, r) == (lsh.b, lsh.r)
    assert p_detect(0.8, b, r) == pytest.approx(1 - (1 - 0.8**r) ** b)
    recall_b, recall_r = lsh_params(0.8, 128)
    assert p_detect(0.8, recall_b, recall_r) > p_detect(0.8, b, r)


def test_exact_dedup_on_normalised_text_and_first_user_turn():
    a = doc("Ava tells the truth, always.")
    b = doc("  ava TELLS the truth always!! ")
    c = doc("Something else entirely.")

    def demo(user: str, reply: str) -> Record:
        return Record(
            kind="demonstration",
            principle_id="p",
            messages=[{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
        )

    d1, d2, d3 = demo("What is 2+2?", "Four."), demo("  what IS 2+2", "It is four."), demo("Other?", "Four.")
    step = ExactDedup()
    assert list(step([a, b, c, d1, d2, d3])) == [a, c, d1, d3]
    assert step.drops == {("duplicate", "p"): 1, ("duplicate_prompt", "p"): 1}


def test_near_dedup_removes_planted_pairs_keeps_smallest_id_and_distinct_docs():
    rng = random.Random(5)
    base = [synth.document(rng, 300) for _ in range(60)]
    records = [doc(t, rid=f"b{i:03d}") for i, t in enumerate(base)]
    near, far = [], []
    for i in range(20):
        copy = synth.mutate(rng, base[i], 0.005)  # Jaccard ~0.97
        near.append(doc(copy, rid=f"a{i:03d}"))  # smaller id than its original: it is the one kept
    for i in range(20, 40):
        copy = synth.mutate(rng, base[i], 0.2)  # Jaccard ~0.3
        far.append(doc(copy, rid=f"c{i:03d}"))
    step = NearDedup(threshold=0.8, num_perm=128, ngram=5)
    kept = list(step(records + near + far))
    kept_ids = {r.id for r in kept}
    assert all(synth.jaccard(base[i], near[i].text) > 0.9 for i in range(20))
    assert {f"b{i:03d}" for i in range(20)}.isdisjoint(kept_ids)
    assert {r.id for r in near + far + records[20:]} <= kept_ids
    assert step.drops == {("near_duplicate", "p"): 20}
    assert step.duplicate_of == {f"b{i:03d}": f"a{i:03d}" for i in range(20)}
    # Output keeps input order.
    assert [r.id for r in kept] == [r.id for r in records + near + far if r.id in kept_ids]
    assert step.params["bands"] * step.params["rows"] <= 128
    assert 0 < step.params["p_detect_at_threshold"] <= 1


def test_near_dedup_demonstrations_on_first_user_turn_and_kinds_apart():
    rng = random.Random(6)
    prompt = " ".join(synth.sentence(rng, 20, 20) for _ in range(5))
    similar_prompt = synth.mutate(rng, prompt, 0.01)  # one word of 100 replaced
    assert synth.jaccard(prompt, similar_prompt) > 0.88

    def demo(user: str, rid: str) -> Record:
        reply = " ".join(synth.sentence(rng) for _ in range(8))
        return Record(
            kind="demonstration",
            principle_id="q",
            id=rid,
            messages=[{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
        )

    d1, d2 = demo(prompt, "d1"), demo(similar_prompt, "d2")
    other = demo(" ".join(synth.sentence(rng, 20, 20) for _ in range(3)), "d3")
    as_doc = doc(prompt + " " + d1.messages[1]["content"], rid="x1")  # a document is never a demo's twin
    step = NearDedup()
    kept = list(step([d2, d1, other, as_doc]))
    assert [r.id for r in kept] == ["d1", "d3", "x1"]
    assert step.drops == {("near_duplicate_prompt", "q"): 1}


def test_visiting_only_bucket_sharers_drops_what_visiting_everyone_drops():
    """Records whose every band is unique can have no candidate: skipping them changes nothing."""

    class VisitAll(NearDedup):
        def _bucket_sharers(self, sig, nonempty):
            return nonempty.copy()

    rng = random.Random(8)
    base = [synth.document(rng, 120) for _ in range(300)]
    # Chains of edits at many distances, empty texts and exact copies: candidates of every kind.
    texts = base + [synth.mutate(rng, base[i % 40], (0.01, 0.05, 0.1, 0.2)[i % 4]) for i in range(160)]
    texts += ["", "", base[7], base[9]]
    records = [doc(t, rid=f"r{rng.randrange(10**6):06d}-{i}") for i, t in enumerate(texts)]
    for threshold in (0.5, 0.8, 0.95):
        fast, slow = NearDedup(threshold=threshold), VisitAll(threshold=threshold)
        assert [r.id for r in fast(records)] == [r.id for r in slow(records)]
        assert fast.duplicate_of == slow.duplicate_of and fast.drops == slow.drops
        assert fast.duplicate_of  # the comparison is not empty
