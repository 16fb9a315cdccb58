"""Decontamination: drop any record sharing a word n-gram with an eval item or a holdout example."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from specc.curate.base import Normalised, Step
from specc.curate.normalize import char_spans, ngram_hashes, normalize
from specc.errors import InputError
from specc.records import Record
from specc.spec.schema import Spec

HOLDOUT_SOURCE = "holdout examples"
_JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_FIELDS = ("text", "prompt", "messages")
_BATCH = 256
_CHUNK_CHARS = 600_000
# An eval item of a few words ("Yes, I can.") would match ordinary prose everywhere and
# empty the corpus; items this short are too generic to leak a benchmark, so they are skipped.
MIN_ITEM_WORDS = 6


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _texts_of(obj: object, where: str) -> list[str]:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with a `text`, `prompt` or `messages` field")
    found = [f for f in _FIELDS if f in obj]
    if not found:
        raise InputError(f"{where}: no `text`, `prompt` or `messages` field (has: {', '.join(sorted(obj)) or 'none'})")
    texts: list[str] = []
    for f in found:
        value = obj[f]
        if f == "messages":
            if not isinstance(value, list):
                raise InputError(f"{where}: `messages` must be a list of {{role, content}} objects")
            for m in value:
                content = m.get("content") if isinstance(m, dict) else m
                if not isinstance(content, str):
                    raise InputError(f"{where}: every message needs a string `content`")
                texts.append(content)
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise InputError(f"{where}: `{f}` must be a string")
    return texts


def read_eval_file(path: Path, label: str | None = None) -> list[str]:
    """Eval items from JSON lines (``text``/``prompt``/``messages``) or plain text, one item a line."""
    label = label or str(path)
    if not path.is_file():
        raise InputError(f"{label}: decontamination file not found (corpus.decontamination.files)")
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    as_json = stem_suffix.lower() in _JSON_SUFFIXES
    items: list[str] = []
    lineno = 0
    try:
        with _open_bytes(path) as fh:
            # Lines are decoded one by one so an encoding error names its own line.
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{label}:{lineno}: not UTF-8 text ({e.reason})") from None
                if not line.strip():
                    continue
                if not as_json:
                    items.append(line.rstrip("\r\n"))
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{label}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
                items.extend(_texts_of(obj, f"{label}:{lineno}"))
    except (OSError, EOFError) as e:
        raise InputError(f"{label}: cannot read decontamination file ({e})") from None
    return items


def _presence(hashes: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A table of flags indexed by the low bits of a hash, set for every hash in ``hashes``: about 64
    flags per hash (so ~1.5% of other hashes share a set flag), at most 2**25 (32 MB)."""
    size = 1 << min(25, max(10, int(len(hashes) * 64).bit_length()))
    mask = np.uint64(size - 1)
    bits = np.zeros(size, dtype=bool)
    bits[(hashes & mask).astype(np.intp)] = True
    return bits, mask


class Decontaminator(Step):
    """Drops records that share a word n-gram (``ngram`` words) with any eval item.

    Items shorter than ``ngram`` words count as one n-gram of their own length, so a short eval
    prompt is caught when a record contains it verbatim (after normalisation). Items under
    ``MIN_ITEM_WORDS`` words are skipped and counted in ``skipped``.
    """

    name = "decontam"

    def __init__(self, sources: dict[str, list[str]], *, ngram: int = 13) -> None:
        super().__init__()
        self.ngram = ngram
        self.sources = list(sources)
        self.by_source: Counter[str] = Counter()  # records dropped, per eval source
        self.items = {name: len(items) for name, items in sources.items()}
        self.skipped = 0
        # n-gram length -> (sorted hashes, the source index of each): numpy arrays, because an eval
        # set can hold millions of n-grams and a dict of Python ints would cost gigabytes.
        parts: dict[int, list[tuple[np.ndarray, int]]] = {}
        for si, items in enumerate(sources.values()):
            all_norm = [t for t in (normalize(x) for x in items) if t]
            norm = [t for t in all_norm if t.count(" ") + 1 >= MIN_ITEM_WORDS]
            self.skipped += len(all_norm) - len(norm)
            lengths = np.array([t.count(" ") + 1 for t in norm], dtype=np.int64)
            for n in sorted({ngram, *lengths[lengths < ngram].tolist()}):
                texts = [t for t, k in zip(norm, lengths) if (k >= ngram if n == ngram else k == n)]
                if texts:
                    parts.setdefault(n, []).append((np.unique(ngram_hashes(texts, n)[0]), si))
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._masks: dict[int, tuple[np.ndarray, np.uint64]] = {}
        for n, chunks in parts.items():
            hashes = np.concatenate([h for h, _ in chunks])
            owners = np.concatenate([np.full(len(h), si, dtype=np.int32) for h, si in chunks])
            order = np.argsort(hashes, kind="stable")
            self._tables[n] = (hashes[order], owners[order])
            self._masks[n] = _presence(hashes)

    @classmethod
    def from_spec(cls, spec: Spec) -> Decontaminator:
        cfg = spec.corpus.decontamination
        sources: dict[str, list[str]] = {}
        for rel in cfg.files:
            sources[rel] = read_eval_file(spec.resolve(rel), rel)
        holdout = [
            text
            for p in spec.principles
            for ex in p.examples
            if ex.holdout
            for text in (*(content for _, content in ex.conversation), ex.good, ex.bad, ex.acceptable)
            if text
        ]
        if holdout:
            sources[HOLDOUT_SOURCE] = holdout
        return cls(sources, ngram=cfg.ngram)

    def contaminated(self, texts: list[str]) -> list[set[int]]:
        """For each normalised text, the indices of the sources it overlaps (empty when clean)."""
        return [h for lo, hi in char_spans(map(len, texts), _CHUNK_CHARS) for h in self._contaminated(texts[lo:hi])]

    def _contaminated(self, texts: list[str]) -> list[set[int]]:
        hits: list[set[int]] = [set() for _ in texts]
        for n, (table, owners) in self._tables.items():
            h, offsets = ngram_hashes(texts, n)
            # The presence bits rule out almost every n-gram with one lookup; the binary search, ~20
            # dependent reads each, runs on the few that remain.
            bits, mask = self._masks[n]
            cand = np.flatnonzero(bits[(h & mask).astype(np.intp)])
            if len(cand) == 0:
                continue
            hc = h[cand]
            lo = np.searchsorted(table, hc, side="left")
            match = table[lo.clip(max=len(table) - 1)] == hc
            found = cand[match]
            if len(found) == 0:
                continue
            hi = np.searchsorted(table, h[found], side="right")
            doc = np.searchsorted(offsets, found, side="right") - 1
            for d, a, b in zip(doc.tolist(), lo[match].tolist(), hi.tolist()):
                hits[d].update(owners[a:b].tolist())
        return hits

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        return next(self._check([record]))

    def facts(self, records: list[Record], texts: Normalised) -> list[tuple[int, ...]] | None:
        """The eval sources each record overlaps (empty when clean)."""
        if not self._tables:
            return None
        return [tuple(sorted(h)) for h in self.contaminated(texts.content)]

    def _check(self, batch: list[Record]) -> Iterator[bool | tuple[bool, str]]:
        missing = [r for r in batch if r.id not in self.known] if self._tables else []
        if missing:
            self.known.update(zip((r.id for r in missing), self.facts(missing, Normalised(missing))))
        hits = [self.known[r.id] for r in batch] if self._tables else [()] * len(batch)
        for found in hits:
            if found:
                for si in found:
                    self.by_source[self.sources[si]] += 1
                yield False, "eval_overlap"
            else:
                yield True

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= _BATCH:
                yield from self._flush(batch)
                batch = []
        yield from self._flush(batch)

    def _flush(self, batch: list[Record]) -> Iterator[Record]:
        for record, verdict in zip(batch, self._check(batch)):
            if verdict is True:
                yield record
            else:
                self.drop(record, verdict[1])
