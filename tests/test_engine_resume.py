"""A run killed with SIGKILL and restarted repeats no finished call: counted at the server."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine_driver import FAN_OUT, first_stage, follow_ups
from fakeserver import prompt_sha
from specc.generate.cache import Cache
from specc.generate.openai import openai_id

HERE = Path(__file__).parent


def test_sigkill_mid_run_then_rerun_makes_only_the_missing_calls(tmp_path):
    count_file = tmp_path / "completions.txt"
    cache_path = tmp_path / "cache.sqlite"
    server = subprocess.Popen(
        [sys.executable, str(HERE / "fakeserver.py"), "--port", "0", "--latency", "0.05,0.3"]
        + ["--count-file", str(count_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        cmd = [sys.executable, str(HERE / "engine_driver.py"), "--url", url, "--cache", str(cache_path), "--n", "20"]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        finished = 0
        for line in driver.stdout:
            finished += line.startswith("result")
            if finished >= 30:
                break
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        driver.stdout.close()
        assert driver.returncode == -signal.SIGKILL

        with Cache(cache_path) as cache:
            stored = cache.keys()
        total = 20 * (1 + FAN_OUT)
        assert 30 <= len(stored) < total
        time.sleep(0.5)  # calls in flight at the kill finish at the server (latency <= 0.3 s)
        before = len(count_file.read_text().split())

        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
        stats = json.loads(out.strip().splitlines()[-1].removeprefix("stats "))
        assert stats["calls"] == total - len(stored) and stats["cached"] == len(stored) and stats["failed"] == 0
        assert len(count_file.read_text().split()) - before == total - len(stored)
    finally:
        server.terminate()
        server.stdout.close()
        server.wait(timeout=10)

    # Every task is now stored; no prompt whose result was stored before the kill reached the server again.
    llm_id = openai_id("fake-model")  # what the driver's provider calls itself, whatever its URL
    tasks = first_stage(llm_id, 20)
    tasks += [f for t in tasks for f in follow_ups(llm_id, t)]
    with Cache(cache_path) as cache:
        assert cache.keys() == {t.key for t in tasks}
    calls = collections.Counter(count_file.read_text().split())
    for t in tasks:
        n = calls[prompt_sha(list(t.messages))]
        # 2 only for calls in flight at the kill: answered by the server, never received.
        assert n == 1 if t.key in stored else n in (1, 2)
    assert sum(calls.values()) <= total + 8  # at most `concurrency` calls were lost in flight
