"""What an eval needs from the built corpus: where it is, what each principle's part covered, and which items it leaks.

Decontamination runs ``specc.curate.decontam`` in the other direction: the n-gram table is
built from the suite's items (thousands of short texts) and the corpus (up to a hundred
million tokens) streams past it in batches, so memory follows the suite, not the corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from specc.curate.decontam import Decontaminator
from specc.curate.normalize import normalize
from specc.emit import iter_rows, read_manifest

_BATCH = 512
TOP = 12  # document types, settings and audiences named to the other-domain item writer


@dataclass
class Corpus:
    """A built corpus: its folder, manifest, and per principle the document types, settings and audiences it used."""

    path: Path
    manifest: dict
    domains: dict[str, dict[str, Counter]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> list:
        """What identifies the rows: the spec they were built from and every shard's hash."""
        return [self.manifest.get("spec", {}).get("sha256"), sorted(s["sha256"] for s in self.manifest.get("shards", []))]

    def describe(self, pid: str) -> str:
        """The corpus's domains for one principle as prompt lines (empty when it has no documents)."""
        d = self.domains.get(pid) or {}
        lines = []
        for label, key in (("Document types", "genre"), ("Settings", "setting"), ("Audiences", "audience")):
            top = sorted((d.get(key) or Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
            if top:
                lines.append(f"- {label}: " + "; ".join(name for name, _ in top))
        return "\n".join(lines)


def open_corpus(path: Path) -> Corpus:
    """Read a built corpus's manifest and, from its documents, what each principle's part was about."""
    manifest = read_manifest(path)
    out = Corpus(Path(path), manifest)
    for row in iter_rows(path, "documents"):
        d = out.domains.setdefault(row["principle_id"], {"genre": Counter(), "setting": Counter(),
                                                         "audience": Counter()})
        if row.get("genre"):
            d["genre"][row["genre"]] += 1
        idea = _idea(row.get("idea"))
        for key in ("setting", "audience"):
            value = str(idea.get(key) or "").strip()
            if value:
                d[key][value[:120]] += 1
    return out


def _idea(raw) -> dict:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def corpus_texts(path: Path) -> Iterator[str]:
    """Every kept row's text as curation saw it: a document, or a conversation's messages joined."""
    for row in iter_rows(path, "documents"):
        yield row.get("text") or ""
    for row in iter_rows(path, "demonstrations"):
        yield "\n\n".join(m["content"] for m in row.get("messages") or [])


def contaminated(items: dict[str, str], corpus: Iterable[str], ngram: int) -> set[str]:
    """The ids of the items that share a word ``ngram`` with any corpus text (a short item: all of its words)."""
    if not items:
        return set()
    ids = list(items)
    table = Decontaminator({i: [items[i]] for i in ids}, ngram=ngram)
    hit: set[int] = set()
    batch: list[str] = []

    def flush() -> None:
        for found in table.contaminated([normalize(t) for t in batch]):
            hit.update(found)
        batch.clear()

    for text in corpus:
        batch.append(text)
        if len(batch) >= _BATCH:
            flush()
    flush()
    return {ids[i] for i in hit}
