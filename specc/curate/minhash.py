"""Vectorised MinHash signatures in datasketch's own ``affine32`` hash family.

datasketch hashes one shingle at a time in Python. Here every word n-gram of a batch of texts is
hashed once with numpy (``normalize.ngram_hashes``), and the permutations are applied as array
operations, ``fmix32(h) * a + b mod 2**32``, with the ``a``/``b`` datasketch draws for the same
seed. The result is bit-identical to ``MinHash(num_perm, seed, hashfunc=H).update_batch`` for
the shingle hash ``H`` below, and loads into real ``LeanMinHash`` objects that ``MinHashLSH``
indexes. Big inputs are split over worker processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache

import numpy as np

from specc.curate.base import process_context
from specc.curate.normalize import char_spans, ngram_hashes, normalize

# datasketch (and scipy under it) is imported only where it is used, so worker processes,
# which need numpy alone, start in a fraction of a second.

SCHEME = "affine32"
_MAX32 = np.uint32(0xFFFFFFFF)
EMPTY = _MAX32  # every hash value in the sketch of an empty text
# Shingles per block: 64k x 4 B = 256 KB, an L2-sized working vector (measured best).
_BLOCK_SHINGLES = 65_536
# Characters of text per chunk: ~200 documents of 500 words, small enough for cache-sized arrays.
_CHUNK_CHARS = 600_000
# Below this many texts, starting worker processes costs more than it saves (forked workers
# start in milliseconds; spawned ones import numpy and specc first).
_POOL_MIN_TEXTS = 5_000
_SPAWN_MIN_TEXTS = 50_000
# Texts per task sent to a worker.
_TASK_TEXTS = 2_000


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``(a, b)`` for ``num_perm`` and ``seed`` (affine32 scheme)."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, fn_weight: float = 0.9) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for ``threshold``, weighting false negatives by ``fn_weight``.

    Every candidate is verified against its signature afterwards, so a false positive costs one
    comparison while a false negative is a duplicate left in the corpus: recall is weighted up.
    """
    from datasketch import MinHashLSH

    # The public constructor runs the optimisation; an empty in-memory index costs nothing.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(1.0 - fn_weight, fn_weight))
    return lsh.b, lsh.r


def p_detect(threshold: float, bands: int, rows: int) -> float:
    """Probability that a pair at exactly ``threshold`` Jaccard shares at least one band."""
    return 1.0 - (1.0 - threshold**rows) ** bands


def shingle_hash32(h64: np.ndarray) -> np.ndarray:
    """The 32-bit value handed to the permutations: the well-mixed top half of the 64-bit hash."""
    return (h64 >> np.uint64(32)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    # datasketch's pre-mix for affine32 (MurmurHash3 32-bit finaliser), applied once per shingle.
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _sign_chunk(texts: list[str], a: np.ndarray, b: np.ndarray, ngram: int) -> np.ndarray:
    num_perm = len(a)
    h64, offsets = ngram_hashes(texts, ngram)
    x = _fmix32(shingle_hash32(h64))
    out = np.full((num_perm, len(texts)), _MAX32, dtype=np.uint32)
    nonempty = np.flatnonzero(np.diff(offsets))
    if len(nonempty) == 0:
        return out.T
    # Blocks of whole texts of about _BLOCK_SHINGLES shingles, one permutation at a time: the
    # working vector stays in L2 cache and the min runs over contiguous memory, which is ~30x
    # faster than reducing a (shingles x permutations) matrix along its rows.
    ends = offsets[nonempty + 1]
    marks = np.arange(_BLOCK_SHINGLES, int(ends[-1]) + _BLOCK_SHINGLES, _BLOCK_SHINGLES)
    cuts = np.minimum(np.searchsorted(ends, marks, "left") + 1, len(nonempty))
    bounds = np.unique(np.concatenate(([0], cuts)))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        docs = nonempty[lo:hi]
        s0, s1 = int(offsets[docs[0]]), int(offsets[docs[-1] + 1])
        xs, starts = x[s0:s1], offsets[docs] - s0
        v = np.empty(s1 - s0, dtype=np.uint32)
        block = np.empty((num_perm, len(docs)), dtype=np.uint32)
        for k in range(num_perm):
            np.multiply(xs, a[k], out=v)
            np.add(v, b[k], out=v)
            np.minimum.reduceat(v, starts, out=block[k])
        out[:, docs] = block
    return out.T


def _sign(texts: list[str], a: np.ndarray, b: np.ndarray, ngram: int, raw: bool) -> np.ndarray:
    """Signatures of a list of texts, in cache-sized chunks (also the worker-process entry point)."""
    out = np.empty((len(texts), len(a)), dtype=np.uint32)
    for lo, hi in char_spans(map(len, texts), _CHUNK_CHARS):
        chunk = texts[lo:hi]  # normalised chunk by chunk: the copies never pile up
        out[lo:hi] = _sign_chunk([normalize(t) for t in chunk] if raw else chunk, a, b, ngram)
    return out


_INHERITED: list[str] | None = None


def _sign_inherited(span: tuple[int, int], a: np.ndarray, b: np.ndarray, ngram: int, raw: bool) -> np.ndarray:
    lo, hi = span
    return _sign(_INHERITED[lo:hi], a, b, ngram, raw)


def signatures(
    texts: list[str],
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    workers: int | None = None,
    *,
    raw: bool = False,
) -> np.ndarray:
    """MinHash hash values, shape ``(len(texts), num_perm)`` uint32, of normalised texts.

    ``raw=True`` normalises the texts first (in the workers, when there are any). Empty texts
    get the empty sketch (all ``2**32 - 1``). ``workers``: processes to use; by default every
    core once the input is big enough to pay for starting them, else none.
    """
    a, b = permutations(num_perm, seed)
    ctx = process_context()
    if workers is None:
        enough = _POOL_MIN_TEXTS if ctx.get_start_method() == "fork" else _SPAWN_MIN_TEXTS
        workers = (os.cpu_count() or 1) if len(texts) >= enough else 1
    if workers <= 1 or len(texts) <= _TASK_TEXTS:
        return _sign(texts, a, b, ngram, raw)
    spans = [(i, min(i + _TASK_TEXTS, len(texts))) for i in range(0, len(texts), _TASK_TEXTS)]
    n = len(spans)
    global _INHERITED
    try:
        # Processes, not threads: numpy calls this small hand the GIL back and forth too often.
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            if ctx.get_start_method() == "fork":
                _INHERITED = texts  # forked workers read the texts from inherited memory, unpickled
                parts = list(pool.map(_sign_inherited, spans, [a] * n, [b] * n, [ngram] * n, [raw] * n))
            else:
                tasks = [texts[lo:hi] for lo, hi in spans]
                parts = list(pool.map(_sign, tasks, [a] * n, [b] * n, [ngram] * n, [raw] * n))
    except (BrokenProcessPool, OSError):
        return _sign(texts, a, b, ngram, raw)  # workers could not start here: do it in-process
    finally:
        _INHERITED = None
    return np.concatenate(parts)


def lean_minhash(hashvalues: np.ndarray, seed: int = 1):
    """A real datasketch ``LeanMinHash`` over one row of ``signatures``."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=hashvalues, scheme=SCHEME)
