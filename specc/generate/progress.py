"""Progress per stage: rich bars on a terminal, periodic plain lines otherwise, nothing when quiet.

Totals grow while a run goes on, because the DAG adds tasks as results arrive.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


@dataclass
class StageProgress:
    """Counters for one stage."""

    total: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def tok_per_s(self) -> float:
        return self.output_tokens / max(time.monotonic() - self.started, 1e-6)


RENDER_INTERVAL = 0.1  # seconds between redraws of the live bars
_BATCH_DONE = ("completed", "expired", "cancelled", "failed", "abandoned")


class Progress:
    """Reports what the engine does; use as a context manager so the display is closed."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        live: bool | None = None,
        console: Console | None = None,
        interval: float = 10.0,
    ):
        self.quiet = quiet
        self.live = sys.stdout.isatty() if live is None else live
        self.console = console or Console(stderr=True, highlight=False)
        self.interval = interval
        self.stages: dict[str, StageProgress] = {}
        self.batches: dict[str, tuple[str, int, int, int]] = {}  # name -> (state, completed, failed, requests)
        self._bars: RichProgress | None = None
        self._bar_ids: dict[str, int] = {}
        self._last_line = 0.0
        self._dirty = False
        self._stale: set[str] = set()  # stages whose bar has not been redrawn since they changed
        self._last_render = 0.0

    # -- what the engine calls ------------------------------------------------------
    def add(self, stage: str, n: int = 1) -> None:
        """``n`` more tasks exist in ``stage``."""
        st = self.stages.setdefault(stage, StageProgress())
        st.total += n
        self._changed(stage)

    def update(
        self,
        stage: str,
        *,
        cached: bool = False,
        failed: bool = False,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """One task of ``stage`` finished."""
        st = self.stages.setdefault(stage, StageProgress())
        st.done += 1
        st.cached += cached
        st.failed += failed
        st.input_tokens += input_tokens
        st.output_tokens += output_tokens
        st.cost += cost
        self._changed(stage)

    def batch(self, name: str, state: str, completed: int, failed: int, requests: int) -> None:
        """A submitted batch's state and counts; a new state is printed even when quiet (it may be hours apart)."""
        old = self.batches.get(name)
        self.batches[name] = (state, completed, failed, requests)
        if old is None or old[0] != state:
            self.console.print(
                f"batch {name}: {state} ({completed:,}/{requests:,} done, {failed:,} failed)", markup=False
            )
        if self.live and not self.quiet:
            self._render_batch(name)

    def warn(self, message: str) -> None:
        """Say something the user should know about the run, even when quiet."""
        self.console.print(f"warning: {message}", markup=False)

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.stages.values())

    def line(self) -> str:
        """One plain line: every stage's done/total, hits and failures, throughput and cost."""
        parts = [
            f"{name} {s.done}/{s.total} (hits {s.cached}, failed {s.failed}, {s.tok_per_s():.0f} tok/s)"
            for name, s in self.stages.items()
        ]
        running = [b for b in self.batches.values() if b[0] not in _BATCH_DONE]
        if running:
            done, total = sum(b[1] for b in running), sum(b[3] for b in running)
            parts.append(f"{len(running)} batch(es) running ({done}/{total} done)")
        return " | ".join(parts) + f" | ${self.cost:.4f}"

    # -- display ----------------------------------------------------------------------
    def _changed(self, stage: str) -> None:
        if self.quiet:
            return
        if self.live:
            # Redrawn a few times a second at most: at hundreds of calls a second, updating the bars on
            # every event cost more than the calls themselves.
            self._stale.add(stage)
            now = time.monotonic()
            if now - self._last_render >= RENDER_INTERVAL:
                self._last_render = now
                self._flush_bars()
            return
        self._dirty = True
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._dirty = False
            self.console.print(self.line(), markup=False)

    def _flush_bars(self) -> None:
        for stage in self._stale:
            self._render_bar(stage)
        self._stale.clear()
        if self._bars is not None:
            self._bars.refresh()

    def _start_bars(self) -> None:
        if self._bars is None:
            self._bars = RichProgress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[tps]:>6.0f} tok/s"),
                TextColumn("hits {task.fields[hits]}"),
                TextColumn("failed {task.fields[fails]}"),
                TextColumn("${task.fields[cost]:.4f}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
                # No refresh thread: specc redraws when it changes the bars (a few times a second at
                # most, see _changed). A thread would also keep curation from forking its workers.
                auto_refresh=False,
            )
            self._bars.start()

    def _render_bar(self, stage: str) -> None:
        self._start_bars()
        st = self.stages[stage]
        if stage not in self._bar_ids:
            self._bar_ids[stage] = self._bars.add_task(stage, total=0, tps=0.0, hits=0, fails=0, cost=0.0)
        self._bars.update(
            self._bar_ids[stage],
            total=st.total,
            completed=st.done,
            tps=st.tok_per_s(),
            hits=st.cached,
            fails=st.failed,
            cost=st.cost,
        )

    def _render_batch(self, name: str) -> None:
        self._start_bars()
        state, completed, failed, requests = self.batches[name]
        bar = f"batch {name}"
        if bar not in self._bar_ids:
            self._bar_ids[bar] = self._bars.add_task(bar, total=requests, tps=0.0, hits=0, fails=0, cost=0.0)
        # The description column carries the state; the token and cost columns belong to the stages.
        self._bars.update(self._bar_ids[bar], description=f"batch {name} {state}", total=requests,
                          completed=completed + failed, fails=failed)
        self._bars.refresh()  # a batch changes every few seconds at most: drawn at once

    def close(self) -> None:
        """Stop the bars, or print the final plain line."""
        if self._stale and not self.quiet:
            self._flush_bars()
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
        elif not self.quiet and not self.live and self.stages and (self._dirty or self._last_line == 0.0):
            self.console.print(self.line(), markup=False)
        self._dirty = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
