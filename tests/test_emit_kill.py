"""SIGKILL during emit: the previous output stays intact and nothing half-written looks complete."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from emit_fixtures import build_info, make_records, make_spec, tree_digest

from specc.emit import emit, read_manifest

TESTS = Path(__file__).parent

# The child emits 3000 documents and stops (sleeps) at a chosen point, announcing it on stdout.
CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    import specc.emit as E
    from emit_fixtures import build_info, make_records, make_spec

    point = {point!r}

    def pause(tag):
        print(tag, flush=True)
        time.sleep(60)

    def records():
        recs = make_records(3000, 600, seed=1)
        for i, r in enumerate(recs):
            if point == "records" and i == len(recs) // 2:
                pause("PAUSED")
            yield r

    real_write = E.write_shards
    def write_shards(root, config, rows, fmt, shard_bytes):
        shards = real_write(root, config, rows, fmt, shard_bytes)
        if point == "shards":  # documents are on disk, demonstrations are not
            pause("PAUSED")
        return shards
    E.write_shards = write_shards

    writers = [lambda d: pause("PAUSED")] if point == "writers" else []
    E.emit(records(), make_spec(), Path({out!r}), build_info=build_info(), extra_writers=writers, shard_bytes=50_000)
    print("DONE", flush=True)
    """
)


def _wait_for(proc: subprocess.Popen, token: str, timeout: float = 20.0) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"child did not reach {token} in {timeout}s"
    line = proc.stdout.readline().strip()
    assert line == token, (line, proc.stderr.read() if proc.poll() is not None else "")


@pytest.mark.parametrize("point", ["records", "shards", "writers"])
def test_sigkill_mid_emit_keeps_the_previous_output(tmp_path, point):
    out = tmp_path / "out"
    first = emit(make_records(10, 4), make_spec(), out, build_info=build_info())
    before = tree_digest(out)

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS), point=point, out=str(out)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        _wait_for(proc, "PAUSED")
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
        assert len(temps) == 1  # the child really is mid-build, beside the target
        if point == "shards":
            assert list((temps[0] / "documents").glob("train-*.parquet"))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    # The previous build is untouched and still the one a reader sees.
    assert tree_digest(out) == before
    assert read_manifest(out) == first
    # What the killed build left is a hidden temp dir (and its lock file, which the kernel
    # unlocked when the process died), never something named like an output.
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out", "child.py", ".out.lock"))
    assert leftovers and all(name.startswith(".out.tmp-") for name in leftovers)

    # The next build cleans up after the killed one.
    m = emit(make_records(12, 4), make_spec(), out, build_info=build_info())
    assert read_manifest(out)["counts"] == m["counts"] == {"documents": 12, "demonstrations": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.py", "out"]
