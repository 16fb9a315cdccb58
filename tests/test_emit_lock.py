"""Two builds into one folder: the second fails at once, and the output is always one complete build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from emit_fixtures import build_info, make_records, make_spec, tree_digest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.emit import emit, output_lock, read_manifest  # noqa: E402
from specc.emit.lock import lock_path  # noqa: E402
from specc.errors import OutputBusyError  # noqa: E402

TESTS = Path(__file__).parent

# Holds the lock on OUT with a temporary build folder beside it, as a build does mid-emit.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from specc.emit import output_lock
    out = Path({out!r})
    with output_lock(out):
        (out.parent / ".out.tmp-holder").mkdir()
        print("HOLDING", flush=True)
        time.sleep(60)
    """
)


def test_a_second_writer_fails_fast_and_leaves_the_first_ones_files_alone(tmp_path):
    out = tmp_path / "out"
    first = emit(make_records(6, 3), make_spec(), out, build_info=build_info())
    before = tree_digest(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(out=str(out))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HOLDING"
        t0 = time.monotonic()
        with pytest.raises(OutputBusyError) as e:
            emit(make_records(9, 3), make_spec(), out, build_info=build_info())
        assert time.monotonic() - t0 < 5
        assert f"another specc build is writing {out}" in str(e.value) and f"pid {holder.pid}" in str(e.value)
        # The running build's temporary folder survives, and the output is still the first build.
        assert (tmp_path / ".out.tmp-holder").is_dir()
        assert tree_digest(out) == before and read_manifest(out) == first
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The kernel released the dead holder's lock: the next build goes through and tidies up.
    m = emit(make_records(9, 3), make_spec(), out, build_info=build_info())
    assert read_manifest(out)["counts"] == m["counts"] == {"documents": 9, "demonstrations": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_lock_is_reentrant_in_one_process_and_gone_after(tmp_path):
    out = tmp_path / "out"
    with output_lock(out) as path:
        assert path == lock_path(out) and path.is_file()
        emit(make_records(4, 2), make_spec(), out, build_info=build_info())  # a build emits under its own lock
        assert path.is_file()
    assert not lock_path(out).exists() and read_manifest(out)["counts"]["documents"] == 4


def test_two_specc_builds_into_one_folder(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_dict(2))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with FakeServer(StageResponder(), latency=(0.05, 0.05)) as server:

        def start(cache: str) -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "specc", "build", str(spec), "--out", str(out), "--cache", str(tmp_path / cache),
                 "--provider", "openai", "--model", "fake-model", "--base-url", server.url, "--quiet", "--allow-short"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

        first = start("a.sqlite")
        deadline = time.monotonic() + 60
        while not lock_path(out).exists():  # the first build has taken the folder
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = start("b.sqlite")
        _, err2 = second.communicate(timeout=60)
        out1, err1 = first.communicate(timeout=120)
    assert second.returncode == 1 and "another specc build is writing" in err2 and "--out" in err2
    assert first.returncode == 0, err1
    m = read_manifest(out)
    assert all((out / s["path"]).is_file() for s in m["shards"]) and (out / "report.html").is_file()
    assert json.loads((out / "manifest.json").read_text())["counts"] == m["counts"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
