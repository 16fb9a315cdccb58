"""The batch executor: the engine's contract (tasks in, results to ``on_result``, RunStats out) over batch files.

Tasks go out in waves. Every ready task whose result is not cached is written as one line of a JSONL
file, which is uploaded and submitted to the endpoint's Batch API (or, with ``export_dir``, written for
a self-hosted engine). When a batch ends, its results are stored in the cache, then handed to
``on_result``; the follow-up tasks they produce, with any other ready task, form the next wave.

A batch and its task keys are recorded in the cache database before the file is uploaded, so a build
killed at any moment polls its batches when run again and submits none of their tasks a second time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from specc.errors import CostCapError, EndpointError, InputError, SpeccError
from specc.generate.accounting import RunStats, check_failure_rate, count_cached, count_call, count_failure
from specc.generate.base import Generation
from specc.generate.batchapi import BatchClient
from specc.generate.batchfiles import LineFailure, LineResult, read_results, request_line, split, write_file
from specc.generate.batchstore import ENDED, BatchRecord, BatchStore
from specc.generate.cache import Cache
from specc.generate.engine import OnFailure, OnResult
from specc.generate.openai import public_url
from specc.generate.pricing import batch_prices, cost_usd, run_prices
from specc.records import Task


@dataclass
class BatchStats(RunStats):
    """RunStats plus what went through batches."""

    waves: int = 0
    batches: int = 0  # submitted by this run
    resumed: int = 0  # submitted by an earlier run and polled by this one
    imported: int = 0  # results that came from imported files
    left_running: int = 0  # batches still at the provider when the run ended (a later round may need them)


class WaveWritten(Exception):
    """A build with ``export_dir`` stopped after writing its ready wave as batch files."""

    def __init__(self, paths: list[Path], requests: int, wave: int, stats: BatchStats, imported: int):
        super().__init__(f"wrote wave {wave}: {requests} requests in {len(paths)} file(s)")
        self.paths, self.requests, self.wave, self.stats = paths, requests, wave, stats
        self.imported = imported  # results this build imported before it stopped, over all its rounds


class _Run:
    """The mutable state of one ``BatchExecutor.run``."""

    def __init__(self, on_result: OnResult, on_failure: OnFailure | None):
        self.on_result = on_result
        self.on_failure = on_failure
        self.stats = BatchStats()
        self.waiting: dict[str, list[Task]] = {}  # key -> tasks wanting its result
        self.ready: dict[str, None] = {}  # keys for the next wave, in the order they became ready
        self.deferred: dict[str, None] = {}  # keys refused for the provider's queue limit: sent when a batch ends
        self.open: dict[str, BatchRecord] = {}  # local_id -> a batch at the provider
        self.in_batch: dict[str, str] = {}  # key -> local_id of the open batch that will answer it
        self.attempts: Counter = Counter()
        self.stop = False


class BatchExecutor:
    """Runs a DAG of tasks through batch files; same ``run`` contract as ``Engine``."""

    def __init__(
        self,
        llm,
        cache: Cache,
        *,
        build: str,
        max_retries: int = 6,
        max_failure_rate: float = 0.25,
        min_tasks_for_failure_rate: int = 20,
        max_usd: float | None = None,
        prices: tuple[float, float] = (0.0, 0.0),
        progress=None,
        poll_seconds: float = 30.0,
        max_requests: int = 50_000,
        max_bytes: int = 200_000_000,
        export_dir: Path | None = None,
        imports: dict[str, LineResult] | None = None,
        retry_base_delay: float = 0.5,
        retry_max_delay: float = 30.0,
    ):
        self.llm = llm
        self.cache = cache
        self.store = BatchStore(cache)
        self.build = build
        self.endpoint = public_url(llm.base_url)  # where batches are polled: never a credential
        self.max_retries = max_retries
        self.max_failure_rate = max_failure_rate
        self.min_tasks_for_failure_rate = min_tasks_for_failure_rate
        self.max_usd = max_usd
        self.prices = prices
        self.progress = progress
        self.poll_seconds = poll_seconds
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.imports = dict(imports or {})
        self._imported = 0  # results imported by the earlier rounds of this build
        self._resumed: set[str] = set()  # local ids of earlier runs' batches this executor took over
        self._kept: set[str] = set()  # imported results stored before a task of this build asked for them
        self._stored: set[str] = set()  # imported results stored while tasks were served, one by one
        self.api = BatchClient(llm, max_retries=max_retries, retry_base_delay=retry_base_delay,
                               retry_max_delay=retry_max_delay)
        self._preflight_done = False

    @classmethod
    def from_spec(cls, spec, llm, cache: Cache, progress=None, *, export_dir=None, imports=None) -> BatchExecutor:
        """An executor configured by ``spec.generator``; a provider's batches cost half its price."""
        g = spec.generator
        prices = run_prices(llm.id, llm.model, g.prices, g.max_usd)
        return cls(
            llm, cache, build=spec.name, max_retries=g.max_retries, max_failure_rate=g.max_failure_rate,
            max_usd=g.max_usd, prices=batch_prices(prices) if export_dir is None else prices,
            progress=progress, poll_seconds=g.batch_options.poll_seconds, max_requests=g.batch_options.max_requests,
            max_bytes=g.batch_options.max_bytes, export_dir=export_dir, imports=imports,
        )

    def run_sync(self, tasks: Iterable[Task], on_result: OnResult, on_failure: OnFailure | None = None) -> BatchStats:
        """``run`` in a fresh event loop; the provider's connections are closed with the loop."""

        async def main() -> BatchStats:
            try:
                return await self.run(tasks, on_result, on_failure)
            finally:
                await self.llm.aclose()

        return asyncio.run(main())

    async def run(self, tasks: Iterable[Task], on_result: OnResult, on_failure: OnFailure | None = None) -> BatchStats:
        """Run ``tasks`` and every follow-up, wave after wave; raise on a fatal or systemic failure.

        A raised SpeccError carries the run's ``stats`` so far.
        """
        t0 = time.monotonic()
        r = _Run(on_result, on_failure)
        try:
            if self.export_dir is None:
                await self._resume(r)
            await self._submit(r, tasks)
            while True:
                if self.export_dir is not None:
                    if r.ready:
                        self._export(r)
                    break
                await self._launch(r)  # sends nothing once the cap is reached: what runs is paid for, and collected
                if not r.open:
                    break
                more = not r.stop and (r.ready or r.deferred)  # waiting for room under the cap or in the queue
                if not more and not any(k in r.in_batch for k in r.waiting):
                    break  # what is still open holds nothing this run needs (a later round may collect it)
                await asyncio.sleep(self.poll_seconds)
                await self._poll(r)
        except SpeccError as e:
            e.stats = r.stats
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._tell_left_running(r)
            raise
        finally:
            self._keep_imports()
            self._imported += r.stats.imported
            r.stats.wall_s = time.monotonic() - t0
        r.stats.left_running = sum(1 for b in r.open.values() if b.state not in ENDED)
        if r.stop:
            r.stats.not_run = sum(len(v) for v in r.waiting.values())
            err = CostCapError(
                f"the spending cap generator.max_usd={self.max_usd:g} was reached (${r.stats.cost_usd:.4f} "
                f"spent this run, {r.stats.not_run} tasks not run; a batch is only sent while the most its "
                "requests can cost fits under the cap); finished work is cached, so a rerun resumes"
            )
            err.stats = r.stats
            raise err
        return r.stats

    # -- the DAG ------------------------------------------------------------------------
    async def _submit(self, r: _Run, tasks: Iterable[Task]) -> None:
        """Serve cached and imported results at once (depth-first through their follow-ups); queue the rest.

        Each list of tasks is looked up in the cache with one query, as the engine does.
        """
        stack = [self._frame(r, tasks)]
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
            gen = found.pop(key, None)
            if gen is None and key in self._stored:  # stored since this list was looked up
                gen = self.cache.get(key)
            if gen is None and key in self.imports:
                gen = self._take_import(r, task)
                if gen is None:
                    continue
            elif gen is None:
                r.waiting[key] = [task]
                if key not in r.in_batch:
                    r.ready[key] = None
                continue
            elif key in self._kept:  # imported in an earlier round of this build: this is its first use
                self._kept.discard(key)
                r.stats.imported += 1
                count_call(r.stats, self.prices, task.stage, gen, self.progress)
            else:
                count_cached(r.stats, self.prices, task.stage, gen, self.progress)
            follow = await _call(r.on_result, task, gen)
            if follow:
                stack.append(self._frame(r, follow))

    def _frame(self, r: _Run, tasks: Iterable[Task]) -> tuple[list[Task], dict[str, Generation]]:
        """The tasks (reversed, to pop in order) and their cached results, looked up in one query."""
        todo = list(tasks)
        todo.reverse()
        return todo, self.cache.get_many({t.key for t in todo if t.key not in r.waiting})

    def _take_import(self, r: _Run, task: Task) -> Generation | None:
        """An imported result for ``task``, stored before use; a failed line leaves the task for the next wave."""
        out = self.imports.pop(task.key).generation(list(task.messages), self.llm.model, {"imported": True})
        if isinstance(out, LineFailure):
            r.waiting[task.key] = [task]
            r.ready[task.key] = None
            return None
        self.cache.put(task.key, task, out)
        self._stored.add(task.key)
        r.stats.imported += 1
        count_call(r.stats, self.prices, task.stage, out, self.progress)
        return out

    async def _deliver(self, r: _Run, key: str, gen: Generation, stage: str) -> None:
        """Account for a stored result and hand it to every task that wants it."""
        waiters = r.waiting.pop(key, None)
        if waiters is None:  # paid for by an earlier run's batch, wanted by no task now: counted, kept
            count_call(r.stats, self.prices, stage, gen, self.progress)
            return
        if count_call(r.stats, self.prices, waiters[0].stage, gen, self.progress, self.max_usd):
            r.stop = True
        for i, t in enumerate(waiters):
            if i:
                count_cached(r.stats, self.prices, t.stage, gen, self.progress)
            follow = await _call(r.on_result, t, gen if i == 0 else dataclasses.replace(gen, cached=True))
            if follow:
                await self._submit(r, follow)

    async def _fail(self, r: _Run, key: str, reason: str) -> None:
        for t in r.waiting.pop(key, ()):
            count_failure(r.stats, key, t.stage, t.principle_id, reason, self.progress)
            if r.on_failure is not None:
                follow = await _call(r.on_failure, t, reason)
                if follow:
                    await self._submit(r, follow)

    # -- waves out ------------------------------------------------------------------------
    def _lines(self, r: _Run, keys: list[str]) -> list[tuple[str, bytes]]:
        return [(k, request_line(k, self.llm.body(list(t.messages), t.params))) for k in keys for t in r.waiting[k][:1]]

    def _estimate(self, task: Task) -> float:
        """The most a task can cost: its prompt (about 4 characters a token) and all of max_tokens."""
        chars = sum(len(m.get("content", "")) for m in task.messages)
        return cost_usd(self.prices, chars // 4, task.params.max_tokens)

    def _affordable(self, r: _Run) -> list[str]:
        """The ready keys, cut where the most they can cost would pass the cap with the open batches' share."""
        keys = list(r.ready)
        if self.max_usd is None:
            return keys
        room = self.max_usd - r.stats.cost_usd - sum(b.est_usd for b in r.open.values())
        for i, k in enumerate(keys):
            room -= self._estimate(r.waiting[k][0])
            if room < 0:
                return keys[:i]
        return keys

    async def _launch(self, r: _Run) -> None:
        """Send the ready keys as the next wave: one batch per file the provider's limits allow."""
        if r.deferred and not r.open:  # nothing queued at the provider any more: try them again
            r.ready.update(r.deferred)
            r.deferred.clear()
        if not r.ready or r.stop:
            return
        keys = self._affordable(r)
        if not keys:
            if not r.open:  # nothing running will free room under the cap
                r.stop = True
            return
        await self._preflight(r)
        files, too_big = split(self._lines(r, keys), self.max_requests, self.max_bytes)
        for key in too_big:
            r.ready.pop(key)
            await self._fail(r, key, f"the request is larger than batch_options.max_bytes={self.max_bytes}")
        if not files:
            return
        wave = self.store.next_wave(self.build)
        for part, lines in enumerate(files, 1):
            rows = [(k, t.stage, t.principle_id, t.model) for k, _ in lines for t in r.waiting[k][:1]]
            est = sum(self._estimate(r.waiting[k][0]) for k, _ in lines)
            rec = self.store.record(
                build=self.build, endpoint=self.endpoint, kind="provider", wave=wave, part=part, tasks=rows, est_usd=est
            )
            for k, _ in lines:
                r.ready.pop(k)
                r.in_batch[k] = rec.local_id
            r.open[rec.local_id] = rec  # so an interruption while it is created still reports it
            r.open[rec.local_id] = await self._create(rec, b"".join(line for _, line in lines))
            r.stats.batches += 1
        r.stats.waves += 1

    async def _create(self, rec: BatchRecord, data: bytes) -> BatchRecord:
        """Upload a recorded batch's file and create the batch, recording each id the moment it is known."""
        f = await self.api.upload(f"specc-{self.build}-wave{rec.wave}-{rec.part}.jsonl", data)
        rec = self.store.update(rec, input_file_id=f.id, state="uploaded")
        try:
            b = await self.api.create(f.id, {"specc_build": self.build, "specc_batch": rec.local_id,
                                             "specc_wave": rec.name})
        except EndpointError:
            # A create that timed out may still have happened: look before the build gives up on it.
            b = await self.api.find(rec.local_id, rec.created_at)
            if b is None:
                raise
        return self._observe(rec, b)

    def _export(self, r: _Run) -> None:
        """Write the ready wave as batch files for a self-hosted engine, record it, and stop the build."""
        keys = list(r.ready)
        files, too_big = split(self._lines(r, keys), self.max_requests, self.max_bytes)
        wave = self.store.next_wave(self.build)
        paths = []
        for part, lines in enumerate(files, 1):
            suffix = f"-{part:02d}" if len(files) > 1 else ""
            path = (self.export_dir / f"{self.build}-wave{wave:03d}{suffix}.jsonl").absolute()
            write_file(path, (line for _, line in lines))
            rows = [(k, t.stage, t.principle_id, t.model) for k, _ in lines for t in r.waiting[k][:1]]
            self.store.record(build=self.build, endpoint=self.endpoint, kind="export", wave=wave, part=part,
                              tasks=rows, path=str(path))
            paths.append(path)
        if too_big:
            self._warn(r, f"{len(too_big)} requests are larger than batch_options.max_bytes and were not written")
        r.stats.waves += 1
        raise WaveWritten(paths, len(keys) - len(too_big), wave, r.stats, self._imported + r.stats.imported)

    # -- batches back -----------------------------------------------------------------------
    async def _resume(self, r: _Run) -> None:
        """Take over the batches earlier runs sent to this endpoint and did not collect."""
        for rec in self.store.open(self.endpoint):
            await self._preflight(r)
            if rec.batch_id is None:
                b = await self.api.find(rec.local_id, rec.created_at)
                if b is None:  # killed before the batch was created: its tasks go into a new one
                    self.store.update(rec, state="abandoned")
                    continue
                rec = self._observe(rec, b)
            r.open[rec.local_id] = rec
            for key in self.store.tasks(rec):
                r.in_batch.setdefault(key, rec.local_id)
            if rec.local_id not in self._resumed:  # each round of a build takes them over again: count once
                self._resumed.add(rec.local_id)
                r.stats.resumed += 1
            if self.progress:
                self.progress.batch(rec.name, rec.state, rec.completed, rec.failed, rec.requests)

    def _observe(self, rec: BatchRecord, b) -> BatchRecord:
        """Record what the provider says about a batch, and show it."""
        counts = b.request_counts
        rec = self.store.update(
            rec, batch_id=b.id, input_file_id=b.input_file_id, state=b.status, output_file_id=b.output_file_id,
            error_file_id=b.error_file_id, completed=counts.completed if counts else rec.completed,
            failed=counts.failed if counts else rec.failed,
        )
        if self.progress:
            self.progress.batch(rec.name, rec.state, rec.completed, rec.failed, rec.requests)
        return rec

    async def _poll(self, r: _Run) -> None:
        for local_id, rec in list(r.open.items()):
            b = await self.api.retrieve(rec.batch_id)
            if b is None:  # the provider no longer knows it: its tasks go into a new batch
                self._release(r, self.store.update(rec, state="abandoned"))
                continue
            rec = r.open[local_id] = self._observe(rec, b)
            if rec.state in ENDED:
                await self._collect(r, rec, b)

    def _release(self, r: _Run, rec: BatchRecord, keys: Iterable[str] | None = None) -> None:
        """Forget an open batch; its keys still wanted go back to the ready wave."""
        r.open.pop(rec.local_id, None)
        for k in self.store.tasks(rec) if keys is None else keys:
            if r.in_batch.get(k) == rec.local_id:
                del r.in_batch[k]
                if k in r.waiting:
                    r.ready[k] = None

    async def _collect(self, r: _Run, rec: BatchRecord, b) -> None:
        """Store an ended batch's results, then deliver them and sort its failures into retries and failures."""
        tasks = self.store.tasks(rec)
        lines: dict[str, LineResult] = {}
        for file_id in (b.error_file_id, b.output_file_id):  # a result beats an error for the same key
            if file_id:
                content = await self.api.content(file_id)
                try:
                    lines.update((x.key, x) for x in read_results(content, f"batch {b.id} file {file_id}"))
                except InputError as e:  # the provider's file, not the user's: a run error
                    raise EndpointError(f"{self.endpoint}: {e}") from None
        results: dict[str, Generation] = {}
        failures: dict[str, LineFailure] = {}
        for key, line in lines.items():
            if key not in tasks:
                continue
            want = r.waiting.get(key)
            out = line.generation(list(want[0].messages) if want else [], self.llm.model, {"batch": b.id})
            if isinstance(out, LineFailure):
                failures[key] = out
            else:
                results[key] = out
        self.cache.put_many((k, *tasks[k], g) for k, g in results.items())
        self.store.update(rec, collected_at=time.time())
        self._release(r, rec, tasks)
        for k in list(r.deferred):  # a batch ended: the provider's queue has room again
            r.ready[k] = None
        r.deferred.clear()
        for key, gen in results.items():
            r.ready.pop(key, None)
            await self._deliver(r, key, gen, tasks[key][0])
        batch_failure = _batch_errors(b) if b.status == "failed" else None
        for key in tasks:
            if key in results or key not in r.waiting:
                continue
            failure = batch_failure or failures.get(key)
            if failure is None and b.status == "completed":  # the provider lost it: an attempt, not a free retry
                failure = LineFailure("the batch completed without a result for this request", retry=True)
            await self._retry_or_fail(r, key, failure, bool(r.open))
        check_failure_rate(r.stats, self.max_failure_rate, self.min_tasks_for_failure_rate)

    async def _retry_or_fail(self, r: _Run, key: str, failure: LineFailure | None, others_running: bool) -> None:
        """A request with no result: into a later batch, or failed for good with its reason."""
        if failure is None or not failure.tried:
            return  # the batch ended before the request ran (expired, cancelled): already back in the wave
        if failure.code == "token_limit_exceeded" and others_running:
            r.ready.pop(key, None)
            r.deferred[key] = None  # the provider's queue is full: wait for a batch to end, not an attempt
            return
        task = r.waiting[key][0]
        adapted = self.llm.adapt(failure.message, failure.param, _full_body(self.llm, task))
        if not (failure.retry or adapted):
            r.ready.pop(key, None)
            await self._fail(r, key, failure.reason)
            return
        r.attempts[key] += 1
        if r.attempts[key] > self.max_retries:
            r.ready.pop(key, None)
            await self._fail(r, key, f"{failure.reason} (gave up after {r.attempts[key]} attempts)")
            return
        r.stats.retries += 1

    def _keep_imports(self) -> None:
        """Store imported results no task of this run reached, when a recorded wave says what task they answer."""
        for key in [k for k in self.imports if self.cache.has(k)]:
            del self.imports[key]  # imported twice: the stored result stands, and is no new call
        known = self.store.lookup(list(self.imports)) if self.imports else {}
        rows = []
        for key, info in known.items():
            out = self.imports.pop(key).generation([], self.llm.model, {"imported": True})
            if not isinstance(out, LineFailure):
                rows.append((key, *info, out))
        self.cache.put_many(rows)
        self._kept.update(k for k, *_ in rows)

    async def _preflight(self, r: _Run) -> None:
        """Fail within seconds on a wrong URL, key or model, before any file is uploaded (once per executor)."""
        if self._preflight_done:
            return
        self._preflight_done = True
        warning = await self.llm.preflight()
        if warning:
            self._warn(r, warning)
        else:
            self.api.reached = True

    def _warn(self, r: _Run, message: str) -> None:
        r.stats.warnings.append(message)
        if self.progress is not None:
            self.progress.warn(message)

    def _tell_left_running(self, r: _Run) -> None:
        """On Ctrl-C: which batches are still at the provider, and how to come back for them."""
        running = [b for b in r.open.values() if b.batch_id and b.state not in ENDED]
        unsure = [b for b in r.open.values() if not b.batch_id]
        r.stats.left_running = len(running)
        if running:
            names = ", ".join(f"{b.name} ({b.batch_id})" for b in running[:5]) + (" ..." if len(running) > 5 else "")
            self._warn(r, f"{len(running)} batch(es) keep running at the provider: {names}. Run the same command "
                          "again to collect their results; `specc batches SPEC --cancel` stops them")
        if unsure:
            names = ", ".join(b.name for b in unsure)
            self._warn(r, f"batch {names} was being created when the build stopped; the same command looks for it "
                          "at the provider and sends its requests again only if it is not there")


def _batch_errors(b) -> LineFailure:
    """Why a whole batch failed (e.g. its file did not validate), as the failure of each of its requests."""
    errors = (b.errors.data if b.errors else None) or []
    code = next((e.code for e in errors if e.code), None)
    text = "; ".join(f"{e.code or 'error'}: {e.message or ''}".strip() for e in errors[:3]) or "the batch failed"
    return LineFailure(f"batch failed: {text}", retry=True, code=code)


def _full_body(llm, task: Task) -> dict:
    """The request with every optional parameter, so ``adapt`` can tell which one an endpoint refused."""
    from specc.generate.openai import chat_body

    return chat_body(llm.model, list(task.messages), task.params)


async def _call(fn, *args):
    out = fn(*args)
    if inspect.isawaitable(out):
        out = await out
    if out is not None and not isinstance(out, Iterable):
        raise TypeError(f"a callback must return follow-up tasks or None, not {type(out).__name__}")
    return out
