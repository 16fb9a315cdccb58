"""Exact and near-duplicate removal (MinHash + datasketch's LSH), per kind.

Near dedup keeps the record with the smallest id of each group. Exact dedup streams and keeps
the first it sees; the Curator feeds it records sorted by id, so it too keeps the smallest id,
whatever order generation finished in. Demonstrations get a second pass on their first user
turn, so one prompt answered twice still counts once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from specc.curate.base import Normalised, Step
from specc.curate.minhash import EMPTY, lsh_params, p_detect, permutations, signatures
from specc.records import Record


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ExactDedup(Step):
    """Drops records whose normalised text (or, for demonstrations, first user turn) was already seen."""

    name = "exact_dedup"

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, set[bytes]] = {}

    def facts(self, records: list[Record], texts: Normalised) -> list[tuple[bytes, bytes]]:
        """Each record's key: the digest of its normalised text, and of its first user turn."""
        return [(_digest(c), _digest(p) if r.kind == "demonstration" else b"")
                for r, c, p in zip(records, texts.content, texts.prompt)]

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        found = self.known.get(record.id)
        key, pkey = found if found is not None else self.facts([record], Normalised([record]))[0]
        seen = self._seen.setdefault(record.kind, set())
        if key in seen:
            return False, "duplicate"
        if record.kind == "demonstration":
            prompts = self._seen.setdefault("prompt", set())
            if pkey in prompts:
                return False, "duplicate_prompt"
            prompts.add(pkey)
        seen.add(key)
        return True


class NearDedup(Step):
    """MinHash over word n-grams of normalised text; one record kept per near-duplicate group.

    Candidates are those of datasketch's ``MinHashLSH`` with datasketch's optimal bands and rows for
    the threshold (false negatives weighted ``fn_weight``); a candidate counts only if the
    signatures agree on at least ``threshold`` of their permutations. Records are visited by id
    and each is compared only with the records kept so far, so a dropped record always has a
    kept twin (``self.duplicate_of``) and a chain of small edits cannot merge dissimilar texts.
    Survivors come out in input order.
    """

    name = "near_dedup"

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        num_perm: int = 128,
        ngram: int = 5,
        seed: int = 1,
        fn_weight: float = 0.9,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        self.workers = workers
        self.bands, self.rows = lsh_params(threshold, num_perm, fn_weight)
        self.duplicate_of: dict[str, str] = {}  # dropped record id -> id of the kept record it matches

    @property
    def params(self) -> dict:
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "ngram": self.ngram,
            "bands": self.bands,
            "rows": self.rows,
            "p_detect_at_threshold": round(p_detect(self.threshold, self.bands, self.rows), 6),
        }

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        raise TypeError("near-duplicate removal needs every record: call the step on an iterable")

    def prepare(self) -> None:
        permutations(self.num_perm, self.seed)

    def facts(self, records: list[Record], texts: Normalised) -> list[tuple[bytes, bytes]]:
        """Each record's signature, and its first user turn's (demonstrations only), as raw bytes."""
        def rows(items: list[str]) -> list[bytes]:
            if not items:
                return []
            return [row.tobytes() for row in signatures(items, self.num_perm, self.ngram, self.seed, self.workers)]

        content = rows(texts.content)
        demos = [i for i, r in enumerate(records) if r.kind == "demonstration"]
        prompts = dict(zip(demos, rows([texts.prompt[i] for i in demos])))
        return [(sig, prompts.get(i, b"")) for i, sig in enumerate(content)]

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        records = list(records)
        missing = [r for r in records if r.id not in self.known]
        if missing:
            self.known.update(zip((r.id for r in missing), self.facts(missing, Normalised(missing))))
        keep = np.ones(len(records), dtype=bool)
        # Visited by id so the kept record of a group is the one with the smallest id.
        order = sorted(range(len(records)), key=lambda i: (records[i].id, records[i].principle_id))
        for kind in ("document", "demonstration"):
            idx = [i for i in order if records[i].kind == kind]
            self._pass(records, idx, keep, 0, "near_duplicate")
            if kind == "demonstration":
                idx = [i for i in idx if keep[i]]
                self._pass(records, idx, keep, 1, "near_duplicate_prompt")
        for i, r in enumerate(records):
            if keep[i]:
                yield r

    def _pass(self, records: list[Record], idx: list[int], keep: np.ndarray, field: int, reason: str) -> None:
        if len(idx) < 2:
            return
        rows = b"".join(self.known[records[i].id][field] for i in idx)
        sig = np.frombuffer(rows, dtype=np.uint32).reshape(len(idx), self.num_perm)
        nonempty = (sig != EMPTY).any(axis=1)
        need = self.threshold * self.num_perm
        # The buckets of datasketch's MinHashLSH with these bands and rows, without its per-record
        # objects: band i of a signature is its values [i*rows, (i+1)*rows), and two records are
        # candidates when any band's bytes are equal. The same candidates, a tenth of the time.
        bands = np.ascontiguousarray(sig[:, : self.bands * self.rows]).view(f"V{4 * self.rows}")
        tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        for pos in np.flatnonzero(self._bucket_sharers(sig, nonempty)).tolist():
            i = idx[pos]
            keys = bands[pos].tolist()
            found: set[int] = set()
            for table, key in zip(tables, keys):
                hit = table.get(key)
                if hit is not None:
                    found.update(hit)
            matches = [j for j in found if np.count_nonzero(sig[j] == sig[pos]) >= need]
            if matches:
                keep[i] = False
                self.duplicate_of[records[i].id] = records[idx[min(matches)]].id
                self.drop(records[i], reason)
            else:
                for table, key in zip(tables, keys):
                    table.setdefault(key, []).append(pos)

    def _bucket_sharers(self, sig: np.ndarray, nonempty: np.ndarray) -> np.ndarray:
        """Which non-empty signatures share a band bucket with another one.

        Only these can have a candidate, so only these are visited one by one: a record whose every
        band is unique is kept, and no other record can ever find it. Bands are compared by a 64-bit
        hash here; equal bands always hash equal, so a hash collision only adds a record to the visit.
        """
        out = np.zeros(len(sig), dtype=bool)
        rows = np.flatnonzero(nonempty)
        if len(rows) < 2:
            return out
        with np.errstate(over="ignore"):
            for b in range(self.bands):
                block = sig[rows, b * self.rows : (b + 1) * self.rows].astype(np.uint64)
                h = np.zeros(len(rows), dtype=np.uint64)
                for k in range(self.rows):
                    h = h * np.uint64(0x100000001B3) + block[:, k]
                _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
                out[rows[counts[inverse] > 1]] = True
        return out
