"""A build stops the event loop's idle executor threads before curating, so curation can fork its workers."""

from __future__ import annotations

import asyncio
import threading

from specc.build import _Threads


def _executor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("asyncio")]


def test_idle_executor_threads_stop_and_later_rounds_still_resolve_names():
    async def main():
        loop = asyncio.get_running_loop()
        threads = _Threads(loop)
        await loop.getaddrinfo("127.0.0.1", 80)  # name lookups run on the default executor
        assert _executor_threads()
        threads.stop_idle()
        assert _executor_threads() == []
        await loop.getaddrinfo("127.0.0.1", 80)  # a top-up round connects again
        assert _executor_threads()

    asyncio.run(main())
    assert _executor_threads() == []
