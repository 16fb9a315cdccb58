"""The async DAG executor: runs Tasks through an LLM with bounded concurrency, retries and a cache.

There are no stage barriers: a finished task's result is stored, then handed to
``on_result``, whose follow-up tasks are scheduled at once. Every result is in the
cache before anything uses it, so a crash loses nothing and a rerun repeats no call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from aiolimiter import AsyncLimiter

from specc.generate.accounting import RunStats, check_failure_rate, count_cached, count_call, count_failure
from specc.generate.cache import Cache
from specc.errors import CostCapError, EndpointError, SpeccError
from specc.generate.base import LLM, Generation, TaskError, TransientError
from specc.generate.pricing import run_prices
from specc.records import Task

OnResult = Callable[[Task, Generation], "Iterable[Task] | None | Awaitable[Iterable[Task] | None]"]
# A failed task's callback may return follow-up tasks too (a gate that waited on it opens).
OnFailure = Callable[[Task, str], "Iterable[Task] | None"]


# Queue priorities: a retry whose wait is over goes before new work, the end-of-run marker after everything.
_RETRY, _NEW, _END = 0, 1, 2


class _RetryLater(Exception):
    """This attempt failed in a way worth retrying after ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay = delay


class _Run:
    """The mutable state of one ``Engine.run``."""

    def __init__(self, on_result: OnResult, on_failure: OnFailure | None):
        self.on_result = on_result
        self.on_failure = on_failure
        self.stats = RunStats()
        self.queue: asyncio.PriorityQueue[tuple[int, int, str | None]] = asyncio.PriorityQueue()
        self.seq = itertools.count()  # FIFO within a priority
        self.waiting: dict[str, list[Task]] = {}  # key -> tasks wanting it; the first is the one called
        self.attempts: dict[str, int] = {}  # key -> failed attempts so far
        self.timers: dict[asyncio.TimerHandle, str] = {}  # retries waiting out their backoff -> their keys
        self.outstanding = 1  # keys queued, in flight or backing off, +1 while the initial tasks are submitted
        self.workers = 0
        self.stop = False  # the cost cap was reached: dispatch nothing new
        self.called: set[str] = set()  # keys answered by the model in this run

    def put(self, key: str | None, priority: int = _NEW) -> None:
        self.queue.put_nowait((priority, next(self.seq), key))


class Engine:
    """Runs a DAG of tasks; see ``run``."""

    def __init__(
        self,
        llm: LLM,
        cache: Cache,
        *,
        concurrency: int = 8,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_retries: int = 6,
        max_failure_rate: float = 0.25,
        min_tasks_for_failure_rate: int = 20,
        max_usd: float | None = None,
        prices: tuple[float, float] | None = None,
        progress=None,
        retry_base_delay: float = 0.5,
        retry_max_delay: float = 30.0,
    ):
        self.llm = llm
        self.cache = cache
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_retries = max_retries
        self.max_failure_rate = max_failure_rate
        self.min_tasks_for_failure_rate = min_tasks_for_failure_rate
        self.max_usd = max_usd
        self.prices = prices if prices is not None else run_prices(llm.id, model_name(llm), None, max_usd)
        self.progress = progress
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self._preflight_done = False
        self._reached = False  # the endpoint has answered at least once
        self._preflight_lock: asyncio.Lock | None = None
        self._rpm: AsyncLimiter | None = None
        self._tpm: AsyncLimiter | None = None

    @classmethod
    def from_spec(cls, spec, llm: LLM, cache: Cache, progress=None) -> Engine:
        """An engine configured by ``spec.generator``."""
        g = spec.generator
        return cls(
            llm,
            cache,
            concurrency=g.concurrency,
            requests_per_minute=g.requests_per_minute,
            tokens_per_minute=g.tokens_per_minute,
            max_retries=g.max_retries,
            max_failure_rate=g.max_failure_rate,
            max_usd=g.max_usd,
            prices=run_prices(llm.id, model_name(llm), g.prices, g.max_usd),
            progress=progress,
        )

    def run_sync(self, tasks: Iterable[Task], on_result: OnResult, on_failure: OnFailure | None = None) -> RunStats:
        """``run`` in a fresh event loop; the provider's connections are closed with the loop."""

        async def main() -> RunStats:
            try:
                return await self.run(tasks, on_result, on_failure)
            finally:
                close = getattr(self.llm, "aclose", None)
                if close is not None:
                    await close()

        return asyncio.run(main())

    async def run(self, tasks: Iterable[Task], on_result: OnResult, on_failure: OnFailure | None = None) -> RunStats:
        """Run ``tasks`` and every follow-up ``on_result`` returns; raise on a fatal or systemic failure.

        A raised SpeccError carries the run's ``stats`` so far.
        """
        t0 = time.monotonic()
        r = _Run(on_result, on_failure)
        self._preflight_lock = asyncio.Lock()
        self._rpm = AsyncLimiter(self.requests_per_minute, 60) if self.requests_per_minute else None
        self._tpm = AsyncLimiter(self.tokens_per_minute, 60) if self.tokens_per_minute else None
        r.workers = self.concurrency
        workers = [asyncio.ensure_future(self._worker(r)) for _ in range(self.concurrency)]
        submit = asyncio.ensure_future(self._submit_initial(r, tasks))
        try:
            done, _ = await asyncio.wait([submit, *workers], return_when=asyncio.FIRST_EXCEPTION)
            for w in done:
                w.result()
        except SpeccError as e:
            e.stats = r.stats
            raise
        finally:
            for h in r.timers:
                h.cancel()
            for w in (submit, *workers):
                w.cancel()
            await asyncio.gather(submit, *workers, return_exceptions=True)
            r.stats.wall_s = time.monotonic() - t0
        if r.stop:
            r.stats.not_run = sum(len(v) for v in r.waiting.values())
            err = CostCapError(
                f"the spending cap generator.max_usd={self.max_usd:g} was reached (${r.stats.cost_usd:.4f} "
                f"spent this run, {r.stats.not_run} tasks not run); finished work is cached, so a rerun resumes"
            )
            err.stats = r.stats
            raise err
        return r.stats

    # -- scheduling -----------------------------------------------------------------
    async def _submit_initial(self, r: _Run, tasks: Iterable[Task]) -> None:
        await self._submit(r, tasks)
        self._finish_one(r)  # release the +1 held while submitting

    async def _submit(self, r: _Run, tasks: Iterable[Task]) -> None:
        """Queue tasks; serve cached ones at once (depth-first through their follow-ups).

        Each list of tasks is looked up in the cache with one query, so a warm rebuild reads its
        results in batches rather than one round trip per task.
        """
        stack = [self._frame(r, tasks)]
        served = 0
        while stack:
            todo, found = stack[-1]
            if not todo:
                stack.pop()
                continue
            task = todo.pop()
            key = task.key
            if self.progress:
                self.progress.add(task.stage)
            if key in r.waiting:
                r.waiting[key].append(task)
                continue
            gen = found.get(key)
            if gen is None and key in r.called:  # answered since this batch was looked up
                gen = self.cache.get(key)
            if gen is None:
                r.waiting[key] = [task]
                r.outstanding += 1
                r.put(key)
                continue
            self._count_cached(r, task, gen)
            follow = await self._deliver(r, task, gen)
            if follow:
                stack.append(self._frame(r, follow))
            served += 1
            if served % 256 == 0:  # a long cached prefix must not starve the workers
                await asyncio.sleep(0)

    def _frame(self, r: _Run, tasks: Iterable[Task]) -> tuple[list[Task], dict[str, Generation]]:
        """The tasks (reversed, to pop in order) and their cached results, looked up in one query."""
        todo = list(tasks)
        todo.reverse()
        found = self.cache.get_many({t.key for t in todo if t.key not in r.waiting})
        return todo, found

    async def _deliver(self, r: _Run, task: Task, gen: Generation):
        out = r.on_result(task, gen)
        if inspect.isawaitable(out):
            out = await out
        if out is not None and not isinstance(out, Iterable):
            raise TypeError(f"on_result must return follow-up tasks or None, not {type(out).__name__}")
        return out

    def _finish_one(self, r: _Run) -> None:
        r.outstanding -= 1
        if r.outstanding == 0:
            for _ in range(r.workers):
                r.put(None, _END)

    async def _worker(self, r: _Run) -> None:
        while True:
            _, _, key = await r.queue.get()
            if key is None:
                return
            if r.stop:  # the cost cap: drain the queue, leaving its tasks for a rerun
                self._finish_one(r)
                continue
            task = r.waiting[key][0]
            try:
                await self._preflight(r)
                gen = await self._attempt(r, key, task)
            except _RetryLater as e:
                # The task waits out its backoff without a worker: the slot serves other tasks meanwhile.
                self._retry_later(r, key, e.delay)
                continue
            except (TaskError, TransientError) as e:
                follow = self._fail(r, key, str(e))
                if follow:
                    await self._submit(r, follow)
            else:
                self.cache.put(key, task, gen)
                r.called.add(key)
                self._count_call(r, task, gen)
                if r.stop:  # the cost cap: a task waiting to retry will not run either; end without waiting
                    self._drop_retries(r)
                waiters = r.waiting.pop(key)
                for i, t in enumerate(waiters):
                    if i:
                        self._count_cached(r, t, gen)
                    follow = await self._deliver(r, t, gen if i == 0 else dataclasses.replace(gen, cached=True))
                    if follow:
                        await self._submit(r, follow)
            r.attempts.pop(key, None)
            self._finish_one(r)

    async def _preflight(self, r: _Run) -> None:
        if self._preflight_done:
            return
        async with self._preflight_lock:
            if not self._preflight_done:
                check = getattr(self.llm, "preflight", None)
                if check is not None:
                    warning = await check()
                    if warning:  # e.g. a busy server that is slow to list its models: not proof it is there
                        self._warn(r, warning)
                    else:
                        self._reached = True
                self._preflight_done = True

    def _warn(self, r: _Run, message: str) -> None:
        r.stats.warnings.append(message)
        warn = getattr(self.progress, "warn", None)
        if warn is not None:
            warn(message)

    # -- one attempt of a call; retries go back to the queue ----------------------------
    async def _attempt(self, r: _Run, key: str, task: Task) -> Generation:
        """Call the model once; raise _RetryLater with the backoff, or TaskError when retries are spent."""
        await self._limit(task)
        try:
            gen = await self.llm.generate(list(task.messages), task.params)
            self._reached = True
            return gen
        except (SpeccError, TaskError):
            raise
        except TransientError as e:
            if e.unreachable and not self._reached:
                # Nothing has ever answered: retrying a refused connection for minutes helps nobody.
                raise EndpointError(f"{e.reason}; is the server running and base_url right?") from None
            last = e
        except (asyncio.TimeoutError, ConnectionError) as e:
            last = TransientError(f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a provider bug fails this task, the failure rate catches a pattern
            raise TaskError(f"{type(e).__name__}: {e}") from None
        attempt = r.attempts.get(key, 0)
        if attempt >= self.max_retries:
            raise TaskError(f"{last.reason} (gave up after {attempt + 1} attempts)")
        r.attempts[key] = attempt + 1
        r.stats.retries += 1
        raise _RetryLater(self._backoff(attempt, last.retry_after))

    def _retry_later(self, r: _Run, key: str, delay: float) -> None:
        def due() -> None:
            del r.timers[handle]
            r.put(key, _RETRY)

        handle = asyncio.get_running_loop().call_later(delay, due)
        r.timers[handle] = key

    def _drop_retries(self, r: _Run) -> None:
        for handle in list(r.timers):
            handle.cancel()
            del r.timers[handle]
            self._finish_one(r)  # its task stays in r.waiting, counted as not run

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 600.0) * random.uniform(1.0, 1.1)
        ceiling = min(self.retry_max_delay, self.retry_base_delay * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    async def _limit(self, task: Task) -> None:
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            # Providers count max_tokens against the limit up front, so we do too.
            est = sum(len(m.get("content", "")) for m in task.messages) // 4 + task.params.max_tokens
            await self._tpm.acquire(min(est, self.tokens_per_minute))

    # -- accounting (shared with the batch executor) ---------------------------------
    def _count_cached(self, r: _Run, task: Task, gen: Generation) -> None:
        count_cached(r.stats, self.prices, task.stage, gen, self.progress)

    def _count_call(self, r: _Run, task: Task, gen: Generation) -> None:
        if count_call(r.stats, self.prices, task.stage, gen, self.progress, self.max_usd):
            r.stop = True

    def _fail(self, r: _Run, key: str, reason: str) -> list[Task]:
        follow: list[Task] = []
        for t in r.waiting.pop(key):
            count_failure(r.stats, key, t.stage, t.principle_id, reason, self.progress)
            if r.on_failure is not None:
                follow += r.on_failure(t, reason) or []
        check_failure_rate(r.stats, self.max_failure_rate, self.min_tasks_for_failure_rate)
        return follow


def model_name(llm: LLM) -> str:
    """The bare model name of an LLM ("openai:gpt-4o@ns=team" -> "gpt-4o")."""
    name = getattr(llm, "model", None)
    if isinstance(name, str):
        return name
    return llm.id.split(":", 1)[-1].split("@", 1)[0]
