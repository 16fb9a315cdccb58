"""Near-dedup benchmark: signature speed against datasketch, quality against exact Jaccard.

    python benchmarks/dedup.py            # signatures + quality (about a minute)
    python benchmarks/dedup.py --full     # also the whole Curator pass on 100k documents

Every method starts from the same normalised texts, so shingling counts against all of them.
The last line is ``speedup_vs_bulk=<x> recall_at_0.9=<r> false_merges_below_0.5=<n>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from datasketch import MinHash

from specc.curate.dedup import NearDedup
from specc.curate.minhash import signatures
from specc.curate.normalize import normalize
from specc.records import Record

_SYNTH = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "curate" / "synth.py"
_spec = importlib.util.spec_from_file_location("curate_synth", _SYNTH)
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)

NUM_PERM, NGRAM = 128, 5
# Share of words replaced in the planted copy; spans Jaccard from ~0.97 down to ~0.1.
FRACTIONS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.35)


def fast_documents(n: int, words: int, seed: int) -> list[str]:
    """n documents of ``words`` random vocabulary words in sentences of 12, naming the assistant."""
    rng = np.random.default_rng(seed)
    vocab = np.array(synth.WORDS)
    idx = rng.integers(0, len(vocab), size=(n, words))
    docs = []
    for row in idx:
        w = vocab[row].tolist()
        sentences = [" ".join(w[i : i + 12]).capitalize() + "." for i in range(0, words, 12)]
        docs.append("Ava said this. " + " ".join(sentences))
    return docs


def best_rate(fn, n: int, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / min(times)


def shingle_bytes(text: str) -> list[bytes]:
    w = text.split()
    if len(w) < NGRAM:
        return [text.encode()]
    return [" ".join(w[i : i + NGRAM]).encode() for i in range(len(w) - NGRAM + 1)]


def speed(norm: list[str]) -> dict[str, float]:
    def per_doc_update(texts):
        for t in texts:
            m = MinHash(num_perm=NUM_PERM)
            for s in shingle_bytes(t):
                m.update(s)

    loop_n, bulk_n = min(200, len(norm)), min(1000, len(norm))
    return {
        # Two worker processes, their start-up included in the time.
        "ours_2_processes": best_rate(lambda: signatures(norm, NUM_PERM, NGRAM, workers=2), len(norm), reps=5),
        "ours_1_process": best_rate(lambda: signatures(norm, NUM_PERM, NGRAM, workers=1), len(norm), reps=5),
        "datasketch_update_loop": best_rate(lambda: per_doc_update(norm[:loop_n]), loop_n, reps=1),
        "datasketch_bulk": best_rate(
            lambda: MinHash.bulk([shingle_bytes(t) for t in norm[:bulk_n]], num_perm=NUM_PERM), bulk_n, reps=2
        ),
    }


def quality(n_docs: int, seed: int) -> dict:
    rng = random.Random(seed)
    base = fast_documents(n_docs, 500, seed)
    records = [Record(kind="document", principle_id="p", text=t) for t in base]
    pairs = []
    for i, text in enumerate(base[: len(FRACTIONS) * 60]):
        copy = synth.mutate(rng, text, FRACTIONS[i % len(FRACTIONS)])
        rec = Record(kind="document", principle_id="p", text=copy)
        records.append(rec)
        pairs.append((records[i], rec, synth.jaccard(text, copy, NGRAM)))
    step = NearDedup(num_perm=NUM_PERM, ngram=NGRAM)
    t = time.perf_counter()
    kept = {r.id for r in step(records)}
    elapsed = time.perf_counter() - t
    high = [(a, b) for a, b, j in pairs if j >= 0.9]
    found = sum(1 for a, b in high if not (a.id in kept and b.id in kept))
    by_id = {r.id: r for r in records}
    merges = [synth.jaccard(by_id[d].text, by_id[k].text, NGRAM) for d, k in step.duplicate_of.items()]
    bins = {}
    for lo, hi in ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.01)):
        sel = [(a, b) for a, b, j in pairs if lo <= j < hi]
        hit = sum(1 for a, b in sel if not (a.id in kept and b.id in kept))
        bins[f"[{lo:.2f},{min(hi, 1):.2f})"] = f"{hit}/{len(sel)}"
    return {
        "records": len(records),
        "near_dedup_seconds": elapsed,
        "params": step.params,
        "recall_at_0.9": found / len(high) if high else 1.0,
        "false_merges_below_0.5": sum(1 for j in merges if j < 0.5),
        "min_merged_jaccard": min(merges) if merges else None,
        "removed_by_planted_jaccard": bins,
    }


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def full_pass(n: int, workdir: Path) -> dict:
    from specc.curate import Curator
    from specc.spec.schema import Spec

    # 2,000 eval items of 40 words; 0.5% of the documents quote 20 words of one.
    evals = [" ".join(d.split()[:40]) for d in fast_documents(2_000, 40, 99)]
    (workdir / "eval.jsonl").write_text("".join(json.dumps({"prompt": e}) + "\n" for e in evals))
    spec = Spec.model_validate(
        {
            "specc": 1,
            "name": "bench",
            "assistant": {"name": "Ava"},
            "principles": [
                {"id": "honesty", "title": "Honesty", "statement": "Ava says what she believes is true."},
                {"id": "care", "title": "Care", "statement": "Ava takes care with risky requests.", "weight": 2},
            ],
            "corpus": {
                "budget": {"tokens": 40_000_000},
                "mix": {"documents": 1.0, "demonstrations": 0.0},
                "decontamination": {"files": ["eval.jsonl"]},
            },
        }
    )
    spec._source = workdir / "spec.yaml"
    t = time.perf_counter()
    texts = fast_documents(n, 500, 7)
    for i in range(0, n, 200):
        words = texts[i].split()
        texts[i] = " ".join(words[:100] + evals[i % len(evals)].split()[10:30] + words[100:])
    rng = random.Random(7)
    genres = ["news report", "FAQ", "blog post", "case study", "short story"]
    records = [
        Record(kind="document", principle_id=("honesty", "care", "care")[i % 3], genre=genres[i % 5], text=text)
        for i, text in enumerate(texts)
    ]
    for i in range(0, n // 50):  # 2% planted near-duplicates
        src = records[i * 37 % n]
        copy = synth.mutate(rng, src.text, 0.01)
        records.append(Record(kind="document", principle_id=src.principle_id, genre=src.genre, text=copy))
    made = time.perf_counter() - t
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, cpu = time.perf_counter(), cpu_seconds()
    result = Curator(spec).run(records)
    elapsed, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # A forked worker's resident set counts the pages it shares with this process too.
    peak_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "records": len(records),
        "generate_seconds": round(made, 1),
        "curate_seconds": round(elapsed, 1),
        "curate_cpu_seconds": round(cpu, 1),
        "docs_per_second": round(len(records) / elapsed),
        "peak_rss_mb": round(peak),
        "peak_rss_workers_mb": round(peak_workers),
        "peak_rss_before_curate_mb": round(rss_before),
        "kept": len(result.kept),
        "dropped": dict(result.dropped),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000, help="documents for the speed run")
    ap.add_argument("--quality-docs", type=int, default=4000, help="documents for the quality run")
    ap.add_argument("--full", action="store_true", help="also time the whole Curator pass")
    ap.add_argument("--full-docs", type=int, default=100_000)
    args = ap.parse_args(argv)

    norm = [normalize(t) for t in fast_documents(args.docs, 500, 1)]
    rates = speed(norm)
    print(f"signatures, {args.docs} docs x 500 words, {NUM_PERM} permutations, {NGRAM}-word shingles (docs/s):")
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:10.0f}")
    speedup = rates["ours_2_processes"] / rates["datasketch_bulk"]
    vs_loop = rates["ours_2_processes"] / rates["datasketch_update_loop"]
    print(f"  speedup vs bulk {speedup:.1f}x (one process {rates['ours_1_process'] / rates['datasketch_bulk']:.1f}x), "
          f"vs update loop {vs_loop:.1f}x")

    q = quality(args.quality_docs, 3)
    print(f"quality, {q['records']} docs, params {q['params']}:")
    print(f"  near-dedup step {q['near_dedup_seconds']:.2f}s; planted pairs removed by exact Jaccard:")
    for span, hit in q["removed_by_planted_jaccard"].items():
        print(f"    {span}: {hit}")
    print(f"  min exact Jaccard of any merged pair: {q['min_merged_jaccard']}")

    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            f = full_pass(args.full_docs, Path(tmp))
        print(f"full Curator pass: {f}")
    recall, merges = q["recall_at_0.9"], q["false_merges_below_0.5"]
    print(f"speedup_vs_bulk={speedup:.1f} recall_at_0.9={recall:.3f} false_merges_below_0.5={merges}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
