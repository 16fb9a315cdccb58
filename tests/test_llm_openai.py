"""The OpenAI-compatible provider: ids, errors sorted into fatal / transient / per-task, fallbacks."""

from __future__ import annotations

import email.utils
import socket
import sys
import threading
import time

import openai
import pytest

from fakeserver import FakeServer, Reply
from specc.generate.base import TaskError, TransientError
from specc.errors import AuthError, EndpointError
from specc.generate.base import LLM, SamplingParams
from specc.generate.factory import llm_id, make_llm
from specc.generate import openai as provider
from specc.generate.openai import OpenAILLM, http_client, public_url, retry_after
from specc.spec.schema import Generator

MSG = [{"role": "user", "content": "hello world"}]


@pytest.fixture(params=["aiohttp", "httpx2"])
def transport(request, monkeypatch):
    """Each test runs over the SDK's aiohttp transport (the default) and its httpx2 one (the fallback)."""
    if request.param == "httpx2":
        monkeypatch.setattr(provider, "http_client", lambda *a: None)
    return request.param


def test_ids_name_the_model_not_the_url_and_factory_flags_override_the_spec(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    gen = Generator(provider="openai", model="gpt-4o-mini")
    llm = make_llm(gen)
    assert isinstance(llm, LLM) and llm.id == "openai:gpt-4o-mini" and llm.base_url == "https://api.openai.com/v1"
    llm = make_llm(gen, model="other", base_url="http://u:p@localhost:8000/v1/?k=1", timeout=3)
    assert llm.id == "openai:other" and llm.timeout == 3 and llm_id(gen, model="other") == llm.id
    assert public_url("https://h.example/v1/") == "https://h.example/v1"
    assert public_url("http://u:p@localhost:8000/v1/?k=1") == "http://localhost:8000/v1"
    named = Generator(provider="openai", model="m", base_url="http://127.0.0.1:8000/v1", cache_namespace="ft-2")
    assert make_llm(named).id == llm_id(named) == "openai:m@ns=ft-2"


def test_missing_key_is_fine_for_a_local_server():
    llm = make_llm(Generator(provider="openai", model="m", base_url="http://127.0.0.1:8000/v1"))
    assert llm.id == "openai:m"


def test_retry_after_header_forms():
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after({"retry-after": when}) <= 10.5
    assert retry_after({}) is None and retry_after(None) is None


async def test_generate_returns_text_usage_and_finish_reason(transport):
    with FakeServer(lambda body: Reply("one two three four", "length")) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        g = await llm.generate(MSG, SamplingParams(max_tokens=4))
        await llm.aclose()
    assert (g.text, g.finish_reason, g.input_tokens, g.output_tokens) == ("one two three four", "length", 2, 4)
    assert g.model == "fake-model" and not g.cached and g.latency_s > 0


@pytest.mark.parametrize(
    "fault, kind, text",
    [
        ("429", TransientError, "429"),
        ("500", TransientError, "HTTP 500"),
        ("drop", TransientError, "connection dropped"),
        ("malformed", TransientError, "malformed"),
        ("hang", TransientError, "timed out"),
    ],
)
async def test_faults_are_transient(fault, kind, text, transport):
    with FakeServer(hang_seconds=3) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=0.5)
        server.force(fault)
        with pytest.raises(kind, match=text) as e:
            await llm.generate(MSG, SamplingParams())
        await llm.aclose()
    if fault == "429":
        assert e.value.retry_after == pytest.approx(0.05)


async def test_bad_request_is_a_task_error(transport):
    def responder(body):
        return Reply("context too long", status=400)

    with FakeServer(responder) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        with pytest.raises(TaskError, match="HTTP 400: context too long"):
            await llm.generate(MSG, SamplingParams())
        await llm.aclose()


async def test_max_completion_tokens_fallback(transport):
    seen = []

    def responder(body):
        seen.append(body)
        if "max_tokens" in body:
            return Reply("Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead.", status=400)
        return "ok"

    with FakeServer(responder) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        assert (await llm.generate(MSG, SamplingParams(max_tokens=9))).text == "ok"
        assert (await llm.generate(MSG, SamplingParams(max_tokens=9))).text == "ok"
        await llm.aclose()
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in seen] == [(True, None), (False, 9), (False, 9)]


async def test_auth_error_message_never_contains_the_key(monkeypatch):
    monkeypatch.setenv("K", "s3cr3t-value")
    with FakeServer(api_key="other") as server:
        llm = OpenAILLM("fake-model", base_url=server.url, api_key_env="K", timeout=5)
        with pytest.raises(AuthError) as e:
            await llm.preflight()
        await llm.aclose()
    assert "K" in str(e.value) and "s3cr3t" not in str(e.value)


async def test_preflight_tolerates_servers_without_models_listing(transport):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url + "/nomodels", timeout=5)
        await llm.preflight()  # /models is 404 there: no verdict until the first completion
        with pytest.raises(EndpointError, match="check base_url"):
            await llm.generate(MSG, SamplingParams())
        await llm.aclose()


async def test_calls_carry_the_key_and_a_rejected_key_is_fatal_without_showing_it(transport, monkeypatch):
    monkeypatch.setenv("K", "right-key")
    with FakeServer(api_key="right-key") as server:
        llm = OpenAILLM("fake-model", base_url=server.url, api_key_env="K", timeout=5)
        assert (await llm.generate(MSG, SamplingParams())).text
        await llm.aclose()
        monkeypatch.setenv("K", "s3cr3t-wrong")
        llm = OpenAILLM("fake-model", base_url=server.url, api_key_env="K", timeout=5)
        with pytest.raises(AuthError, match="HTTP 401") as e:
            await llm.generate(MSG, SamplingParams())
        await llm.aclose()
    assert "s3cr3t" not in str(e.value)


def test_the_aiohttp_transport_is_used_when_installed(monkeypatch):
    assert isinstance(http_client("http://127.0.0.1:8000/v1", 5), openai.DefaultAioHttpClient)
    # A URL with credentials keeps httpx2, which sends them as basic auth; so does a missing aiohttp.
    assert http_client("http://u:p@127.0.0.1:8000/v1", 5) is None
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    assert http_client("http://127.0.0.1:8000/v1", 5) is None


def _closing_server() -> int:
    """A port whose server reads a request and closes the connection without answering."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


async def test_refused_and_dropped_connections_are_told_apart(transport):
    """Both transports sort a refused connection (unreachable) apart from one the server closed."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAILLM("fake-model", base_url=f"http://127.0.0.1:{port}/v1", timeout=5)
    with pytest.raises(TransientError, match="cannot connect") as e:
        await llm.generate(MSG, SamplingParams())
    assert e.value.unreachable
    with pytest.raises(EndpointError, match="cannot reach"):
        await llm.preflight()
    await llm.aclose()

    llm = OpenAILLM("fake-model", base_url=f"http://127.0.0.1:{_closing_server()}/v1", timeout=5)
    with pytest.raises(TransientError, match="connection dropped") as e:
        await llm.generate(MSG, SamplingParams())
    assert not e.value.unreachable
    assert "did not finish listing" in await llm.preflight()
    await llm.aclose()


def test_chat_calls_take_the_proxy_the_environment_names(monkeypatch):
    from specc.generate.openai import env_proxy

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.corp")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert env_proxy("http://vllm.corp:8000/v1/chat/completions") is None  # NO_PROXY
    assert env_proxy("http://127.0.0.1:8000/v1/chat/completions") is None
    assert env_proxy("http://gpu-box:8000/v1/chat/completions") is None  # HTTPS_PROXY does not cover http
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    assert env_proxy("http://gpu-box:8000/v1/chat/completions") == "http://all.internal:3128"
