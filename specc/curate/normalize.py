"""Text normalisation and word n-gram hashing shared by dedup and decontamination."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Iterator

import numpy as np

_PUNCT_RE = re.compile(r"[^\w\s]|_")
# Deleting ASCII punctuation with str.translate is several times faster than the regex and agrees
# with it on ASCII input: the ASCII ``[^\w\s]|_`` is ``string.punctuation`` plus the control
# characters that are not whitespace.
_ASCII_PUNCT = str.maketrans(
    "", "", string.punctuation + "".join(c for c in map(chr, range(128)) if not c.isprintable() and not c.isspace())
)


def normalize(text: str) -> str:
    """NFKC, casefold, strip punctuation, collapse whitespace to single spaces."""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_PUNCT).split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT_RE.sub("", text).split())


def char_spans(sizes: Iterable[int], limit: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` index spans of texts of these ``sizes`` holding about ``limit`` characters each:
    how batches of texts are cut so their hash arrays stay cache-sized."""
    lo = total = 0
    i = -1
    for i, n in enumerate(sizes):
        total += n + 1
        if total >= limit:
            yield lo, i + 1
            lo, total = i + 1, 0
    if lo <= i:
        yield lo, i + 1


# Polynomial rolling hash over UTF-8 bytes, mod 2**64 (numpy's wrap-around). An odd base is
# invertible mod 2**64, so the hash of any byte span comes from two prefix sums and one multiply:
# every word n-gram of a batch of texts is hashed without a Python loop.
_BASE = np.uint64(0x100000001B3)
_BASE_INV = np.uint64(pow(int(_BASE), -1, 1 << 64))
_pow: np.ndarray = np.ones(1, dtype=np.uint64)
_pow_inv: np.ndarray = np.ones(1, dtype=np.uint64)

_M64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _pow, _pow_inv
    if len(_pow) < n:
        size = max(n, 2 * len(_pow))
        with np.errstate(over="ignore"):
            p = np.full(size, _BASE, dtype=np.uint64)
            p[0] = 1
            pi = np.full(size, _BASE_INV, dtype=np.uint64)
            pi[0] = 1
            _pow, _pow_inv = np.cumprod(p, dtype=np.uint64), np.cumprod(pi, dtype=np.uint64)
    return _pow, _pow_inv


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: the polynomial hash's low bits are weak, this spreads them."""
    s, m1, m2 = _M64
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


def span_hash_bytes(data: bytes) -> int:
    """The 64-bit hash ``ngram_hashes`` gives the span ``data`` (a reference for tests)."""
    h = 0
    p = 1
    for c in data:
        h = (h + (c + 1) * p) % (1 << 64)
        p = p * int(_BASE) % (1 << 64)
    return int(fmix64(np.array([h], dtype=np.uint64))[0])


def ngram_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word n-gram of each normalised text, concatenated.

    Returns ``(hashes, offsets)``: text ``i`` owns ``hashes[offsets[i]:offsets[i + 1]]``.
    A text with fewer than ``n`` words is one n-gram (the whole text); an empty text has none.
    Texts must already be normalised (single spaces, no newlines).
    """
    k = len(texts)
    offsets = np.zeros(k + 1, dtype=np.int64)
    if k == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    buf = np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)
    size = len(buf)
    sep = np.flatnonzero((buf == 32) | (buf == 10))
    starts = np.empty(len(sep) + 1, dtype=np.int64)
    starts[0] = 0
    np.add(sep, 1, out=starts[1:])
    ends = np.empty(len(sep) + 1, dtype=np.int64)
    ends[:-1] = sep
    ends[-1] = size
    doc = np.zeros(len(sep) + 1, dtype=np.int64)
    np.cumsum(buf[sep] == 10, out=doc[1:])
    if not all(texts):  # an empty text leaves one empty word behind
        keep = ends > starts
        starts, ends, doc = starts[keep], ends[keep], doc[keep]
    nwords = len(starts)
    if nwords == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    counts = np.bincount(doc, minlength=k)
    # Full n-grams: words i .. i+n-1 inside one text.
    full = np.arange(max(nwords - n + 1, 0))
    if n > 1:
        full = full[doc[: len(full)] == doc[n - 1 :]]
    s_idx, e_idx, owner = starts[full], ends[full + n - 1], doc[full]
    short_docs = np.flatnonzero((counts > 0) & (counts < n))
    if len(short_docs):  # one span over all the words of each short text
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))[short_docs]
        s_idx = np.concatenate((s_idx, starts[first]))
        e_idx = np.concatenate((e_idx, ends[first + counts[short_docs] - 1]))
        owner = np.concatenate((owner, short_docs))
        order = np.argsort(owner, kind="stable")
        s_idx, e_idx, owner = s_idx[order], e_idx[order], owner[order]
    pw, pwi = _powers(size + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(size + 1, dtype=np.uint64)
        prefix[0] = 0
        # sum of (byte + 1) * BASE**j: the +1 keeps NUL bytes from vanishing.
        terms = np.multiply(buf, pw[:size], dtype=np.uint64)
        terms += pw[:size]
        np.cumsum(terms, out=prefix[1:])
        h = fmix64((prefix[e_idx] - prefix[s_idx]) * pwi[s_idx])
    offsets[1:] = np.cumsum(np.bincount(owner, minlength=k))
    return h, offsets
