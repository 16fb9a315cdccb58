"""The one base every curation step shares: keep or drop a record, and count why."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from multiprocessing.context import BaseContext
from typing import Any

from specc.curate.normalize import normalize
from specc.records import Record


class Normalised:
    """The normalised texts of a batch of records, made once and shared by every step that compares text."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    @cached_property
    def content(self) -> list[str]:
        return [normalize(r.content) for r in self.records]

    @cached_property
    def prompt(self) -> list[str]:
        """Each demonstration's first user turn ("" for documents)."""
        return [normalize(r.first_user_turn) if r.kind == "demonstration" else "" for r in self.records]


class Step:
    """A curation step: ``filter`` says keep (``True``) or drop (``(False, reason)``); the base counts.

    Steps that must see every record before deciding (dedup, budget) override ``__call__`` and
    record their drops with ``drop``.
    """

    name: str = "step"

    def __init__(self) -> None:
        self.drops: Counter[tuple[str, str]] = Counter()  # (reason, principle_id) -> records
        self.kind_drops: Counter[tuple[str, str, str]] = Counter()  # (reason, principle_id, kind) -> records
        self.rejected: list[tuple[Record, str]] = []  # the dropped records themselves, for review
        self.known: dict[str, Any] = {}  # record id -> what ``facts`` found for it

    def prepare(self) -> None:
        """Load what ``facts`` needs (models, tables) before workers are forked, so each inherits it."""

    def facts(self, records: list[Record], texts: Normalised) -> list | None:
        """What this step needs to know about each record from the record alone, or None when nothing is worth
        computing ahead. A pure function of the records and the step's settings, so any process can run it."""
        return None

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def drop(self, record: Record, reason: str) -> None:
        self.drops[(reason, record.principle_id)] += 1
        self.kind_drops[(reason, record.principle_id, record.kind)] += 1
        self.rejected.append((record, reason))

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            verdict = self.filter(record)
            keep, reason = (verdict, "dropped") if isinstance(verdict, bool) else verdict
            if keep:
                yield record
            else:
                self.drop(record, reason)


def process_context() -> BaseContext:
    """How steps start worker processes for big inputs.

    Forking is near-instant and re-imports nothing, but copies any lock another thread holds
    at that moment; with other threads alive, workers are spawned as fresh interpreters.
    """
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


_INHERITED: tuple | None = None  # (function, items) for forked workers


def _run_span(span: tuple[int, int]) -> list:
    fn, items = _INHERITED
    return fn(items[span[0] : span[1]])


def workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_spans(fn: Callable[[list], list], items: list, *, min_items: int) -> list:
    """``fn`` over spans of ``items``, results concatenated in order.

    With ``min_items`` items or more and more than one core, the spans run on forked workers that
    read ``items`` from inherited memory: only the results travel back. Where forking is not safe
    (other threads alive) or fails, everything runs in this process; the results are the same.
    """
    import concurrent.futures
    from concurrent.futures.process import BrokenProcessPool

    global _INHERITED
    n = workers()
    ctx = process_context()
    if len(items) < min_items or n < 2 or ctx.get_start_method() != "fork":
        return fn(items)
    step = max(1, -(-len(items) // (4 * n)))  # a few spans per worker evens out their speed
    spans = [(i, min(i + step, len(items))) for i in range(0, len(items), step)]
    _INHERITED = (fn, items)
    try:
        with concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx) as pool:
            return [x for part in pool.map(_run_span, spans) for x in part]
    except (BrokenProcessPool, OSError, multiprocessing.ProcessError):
        return fn(items)
    finally:
        _INHERITED = None
