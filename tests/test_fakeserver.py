"""The fake OpenAI-compatible server behaves like one, faults included."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from fakeserver import FakeServer, Reply, default_responder, prompt_sha

MSG = [{"role": "user", "content": "hello there"}]


def post(url: str, body: dict, key: str | None = None, timeout: float = 5) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_completion_is_deterministic_and_counted(fake_server):
    s1, _, a = post(fake_server.url, {"model": "fake-model", "messages": MSG})
    s2, _, b = post(fake_server.url, {"model": "fake-model", "messages": MSG})
    assert s1 == s2 == 200
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["choices"][0]["message"]["content"] == default_responder({"messages": MSG})
    assert a["usage"]["completion_tokens"] == len(a["choices"][0]["message"]["content"].split())
    assert fake_server.completions == 2 and fake_server.calls_by_prompt[prompt_sha(MSG)] == 2


def test_models_unknown_model_and_auth():
    with FakeServer(models=("m1", "m2"), api_key="secret") as s:
        status, _, body = post(s.url, {"model": "m1", "messages": MSG})
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, _, body = post(s.url, {"model": "zzz", "messages": MSG}, key="secret")
        assert status == 404 and body["error"]["code"] == "model_not_found"
        req = urllib.request.Request(s.url + "/models", headers={"Authorization": "Bearer secret"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert [m["id"] for m in json.loads(r.read())["data"]] == ["m1", "m2"]
        assert s.completions == 0 and s.requests == 3


def test_custom_responder_sees_body_and_sets_finish_reason():
    seen = []

    def responder(body):
        seen.append(body)
        return Reply("cut short", "length")

    with FakeServer(responder) as s:
        fmt = {"type": "json_object"}
        _, _, out = post(s.url, {"model": "fake-model", "messages": MSG, "response_format": fmt, "max_tokens": 7})
    assert seen[0]["response_format"] == fmt and seen[0]["max_tokens"] == 7
    assert out["choices"][0]["finish_reason"] == "length"


async def test_each_fault_reaches_the_client_as_its_kind():
    with FakeServer(hang_seconds=5) as s:
        client = openai.AsyncOpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=5)

        async def call(timeout=5.0):
            return await client.chat.completions.create(model="fake-model", messages=MSG, timeout=timeout)

        s.force("429")
        with pytest.raises(openai.RateLimitError) as e:
            await call()
        assert float(e.value.response.headers["retry-after"]) > 0
        s.force("500")
        with pytest.raises(openai.InternalServerError):
            await call()
        s.force("drop")
        with pytest.raises(openai.APIConnectionError):
            await call()
        s.force("malformed")
        with pytest.raises(ValueError):
            await call()
        s.force("hang")
        with pytest.raises(openai.APITimeoutError):
            await call(timeout=0.3)
        s.force("length")
        r = await call()
        assert r.choices[0].finish_reason == "length"
        assert s.completions == 1 and sum(s.faults_served.values()) == 6
        await client.close()


async def test_serves_32_slow_requests_concurrently():
    with FakeServer(latency=(0.4, 0.4)) as s:
        client = openai.AsyncOpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=10)
        t0 = time.monotonic()
        msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
        await asyncio.gather(*(client.chat.completions.create(model="fake-model", messages=m) for m in msgs))
        wall = time.monotonic() - t0
        await client.close()
    assert s.max_in_flight >= 32 and wall < 2.0


def test_subprocess_mode_prints_url_and_counts_to_file(tmp_path: Path):
    count = tmp_path / "count.txt"
    script = Path(__file__).with_name("fakeserver.py")
    p = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--count-file", str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        url = p.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        for _ in range(3):
            assert post(url, {"model": "fake-model", "messages": MSG})[0] == 200
        assert count.read_text().split() == [prompt_sha(MSG)] * 3
    finally:
        p.terminate()
        p.stdout.close()
        assert p.wait(timeout=5) == 0
