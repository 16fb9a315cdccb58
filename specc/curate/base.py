"""The one base every curation step shares: keep or drop a record, and count why."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from multiprocessing.context import BaseContext

from specc.records import Record


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
