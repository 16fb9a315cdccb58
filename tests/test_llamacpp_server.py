"""The `openai` provider against a real OpenAI-compatible server: llama.cpp's, on loopback, with SmolLM2."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.errors import AuthError, ModelNotFoundError
from specc.generate.base import SamplingParams
from specc.generate.openai import OpenAILLM
from specc.records import Task

HAVE_SERVER = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_SERVER and not os.environ.get("SPECC_REQUIRE_LOCAL"),
        reason="needs pip install 'specc[local]' (llama-cpp-python[server])",
    ),
]

KEY = "test-server-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from specc.generate.local import model_file

    port = _free_port()
    # A file, not a pipe: llama.cpp logs a lot while loading, and a full pipe would stall the server.
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file("smollm2-135m")),
         "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--api_key", KEY],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
        try:
            req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(req, timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start in 120 s")
    yield url
    log.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _task(llm, text: str, **params) -> Task:
    return Task("ideas", "p", llm.id, ({"role": "user", "content": text},),
                SamplingParams(max_tokens=24, seed=3, **params), "t0")


def test_generations_through_the_engine_and_the_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_KEY", KEY)
    llm = OpenAILLM("smollm2", base_url=server, api_key_env="LLAMA_KEY", timeout=60)
    tasks = [_task(llm, "Name one colour."), _task(llm, "Give a JSON object with key colour.", json_mode=True)]
    got = {}
    with Cache(tmp_path / "cache.sqlite") as cache:
        engine = Engine(llm, cache, concurrency=2)
        stats = engine.run_sync(tasks, lambda t, g: got.__setitem__(t.key, g))
        again = engine.run_sync(tasks, lambda t, g: None)
    assert stats.calls == 2 and stats.failed == 0
    assert again.calls == 0 and again.cached == 2
    for g in got.values():
        assert g.text.strip() and g.input_tokens > 0 and 0 < g.output_tokens <= 26
        assert g.finish_reason in ("stop", "length")
    assert got[tasks[1].key].text.lstrip().startswith("{")  # the server enforces JSON mode with a grammar
    assert KEY not in (tmp_path / "cache.sqlite").read_bytes().decode("latin-1")


def test_a_wrong_key_fails_fast_naming_the_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_KEY", "wrong")
    llm = OpenAILLM("smollm2", base_url=server, api_key_env="LLAMA_KEY", timeout=60)
    t0 = time.monotonic()
    with Cache(tmp_path / "cache.sqlite") as cache, pytest.raises(AuthError, match="LLAMA_KEY"):
        Engine(llm, cache).run_sync([_task(llm, "hi")], lambda t, g: None)
    assert time.monotonic() - t0 < 10


def test_an_unknown_model_fails_fast(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_KEY", KEY)
    llm = OpenAILLM("no-such-model", base_url=server, api_key_env="LLAMA_KEY", timeout=60)
    with Cache(tmp_path / "cache.sqlite") as cache, pytest.raises(ModelNotFoundError, match="no-such-model"):
        Engine(llm, cache).run_sync([_task(llm, "hi")], lambda t, g: None)
