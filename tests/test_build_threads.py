"""How a build runs its event loop: idle executor threads stop before curation (so curation can fork its
workers), and the corpus never passes through asyncio's formatting of the main task."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import _Threads, run_build  # noqa: E402
from specc.records import Record  # noqa: E402


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


def test_a_build_never_formats_its_records(tmp_path, monkeypatch):
    """asyncio.run formats its main task's result on the way out: a corpus returned from it was repr'd whole."""
    formatted = []
    monkeypatch.setattr(Record, "__repr__", lambda self: formatted.append(self.id) or "Record(...)")
    path = write_spec(tmp_path / "spec.yaml", spec_dict(2, budget={"tokens": 1500}))
    with FakeServer(StageResponder()) as server:
        result = run_build(path, provider="openai", model="fake-model", base_url=server.url,
                           cache_path=tmp_path / "cache.sqlite", quiet=True)
    assert result.kept and formatted == []
