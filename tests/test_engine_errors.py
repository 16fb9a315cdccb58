"""Misconfiguration fails within seconds, with a message that says what to fix."""

from __future__ import annotations

import io
import socket
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fakeserver import FakeServer
from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.errors import AuthError, EndpointError, ModelNotFoundError
from specc.generate.base import SamplingParams
from specc.generate.openai import OpenAILLM
from specc.generate.progress import Progress
from specc.cli import app
from specc.records import Task


class NoPreflight(OpenAILLM):
    """The same provider without the GET /models check, to prove the first request fails fast too."""

    preflight = None


def tasks(llm, n=50):
    return [
        Task("ideas", "p", llm.id, ({"role": "user", "content": f"q{i}"},), SamplingParams(), "t") for i in range(n)
    ]


def run(llm, tmp_path, n=50):
    """Run n tasks with the default (slow) retry policy; return the seconds it took to fail."""
    with Cache(tmp_path / "c.sqlite") as cache:
        engine = Engine(llm, cache, concurrency=8)
        t0 = time.monotonic()
        try:
            engine.run_sync(tasks(llm, n), lambda t, g: None)
        finally:
            took = time.monotonic() - t0
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("cls", [OpenAILLM, NoPreflight])
def test_wrong_key_names_the_variable(tmp_path, monkeypatch, cls):
    monkeypatch.setenv("TEAM_LLM_KEY", "wrong-key")
    with FakeServer(api_key="right-key") as server:
        llm = cls("fake-model", base_url=server.url, api_key_env="TEAM_LLM_KEY", timeout=5)
        t0 = time.monotonic()
        with pytest.raises(AuthError) as e:
            run(llm, tmp_path)
        assert time.monotonic() - t0 < 3
        assert server.completions == 0 and server.requests <= 8
    assert "TEAM_LLM_KEY" in str(e.value) and "401" in str(e.value)
    assert "wrong-key" not in str(e.value)


def test_missing_key_for_a_keyed_server(tmp_path):
    with FakeServer(api_key="right-key") as server:
        llm = OpenAILLM("fake-model", base_url=server.url, api_key_env="TEAM_LLM_KEY")
        with pytest.raises(AuthError, match="no key was set.*TEAM_LLM_KEY"):
            run(llm, tmp_path)


def test_missing_openai_key_fails_at_construction():
    with pytest.raises(AuthError, match="OPENAI_API_KEY is not set"):
        OpenAILLM("gpt-4o-mini")


@pytest.mark.parametrize("cls", [OpenAILLM, NoPreflight])
def test_unreachable_endpoint_fails_fast(tmp_path, cls):
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = cls("fake-model", base_url=url, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as e:
        run(llm, tmp_path)
    assert time.monotonic() - t0 < 3
    assert url in str(e.value) and "server running" in str(e.value)


@pytest.mark.parametrize("cls", [OpenAILLM, NoPreflight])
def test_unknown_model_names_model_and_url(tmp_path, cls):
    with FakeServer(models=("served-a", "served-b")) as server:
        llm = cls("not-served", base_url=server.url, timeout=5)
        t0 = time.monotonic()
        with pytest.raises(ModelNotFoundError) as e:
            run(llm, tmp_path)
        assert time.monotonic() - t0 < 3 and server.completions == 0
    assert "not-served" in str(e.value) and server.url in str(e.value)


def test_wrong_base_url_path_says_to_check_it(tmp_path):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url.removesuffix("/v1") + "/api", timeout=5)
        t0 = time.monotonic()
        with pytest.raises(EndpointError, match="check base_url"):
            run(llm, tmp_path)
        assert time.monotonic() - t0 < 3


def test_server_dying_mid_run_is_retried_then_recorded(tmp_path):
    """After the endpoint has answered once, refused connections are transient, not fatal."""
    server = FakeServer().start()
    llm = OpenAILLM("fake-model", base_url=server.url, timeout=2)
    stopped = []

    def on_result(t, g):
        if not stopped:
            server.stop()
            stopped.append(True)

    with Cache(tmp_path / "c.sqlite") as cache:
        engine = Engine(llm, cache, concurrency=1, max_retries=2, retry_base_delay=0.01, retry_max_delay=0.02,
                        min_tasks_for_failure_rate=100)
        stats = engine.run_sync(tasks(llm, 5), on_result)
    assert stats.calls == 1 and stats.failed == 4
    assert all("cannot connect" in f["reason"] for f in stats.failures)


def test_unknown_host_fails_fast(tmp_path):
    llm = OpenAILLM("fake-model", base_url="http://no-such-host.invalid/v1", timeout=5)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="no-such-host.invalid.*server running"):
        run(llm, tmp_path)
    assert time.monotonic() - t0 < 3


def test_a_server_slow_to_list_its_models_is_a_warning_not_a_failure(tmp_path):
    """llama.cpp's server answers GET /models only between generations; a busy server is still a server."""
    buf = io.StringIO()
    with FakeServer(models_delay=30) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        llm.preflight_timeout = 0.2
        with Cache(tmp_path / "c.sqlite") as cache, Progress(quiet=True, console=Console(file=buf)) as progress:
            stats = Engine(llm, cache, concurrency=4, progress=progress).run_sync(tasks(llm, 10), lambda t, g: None)
        assert stats.calls == 10 and server.completions == 10
    assert len(stats.warnings) == 1 and "did not list its models within 0.2 s" in stats.warnings[0]
    assert buf.getvalue().startswith("warning: ") and server.url in buf.getvalue()


def test_cli_refuses_a_spending_cap_it_cannot_price(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "specc: 1\nname: capped\nassistant: {name: Nova}\n"
        "principles:\n  - {id: honesty, title: Be honest, statement: Nova never lies.}\n",
        encoding="utf-8",
    )
    with FakeServer(models=("my-finetune",)) as server:
        res = CliRunner().invoke(app, ["build", str(spec), "--provider", "openai", "--model", "my-finetune",
                                       "--base-url", server.url, "--max-usd", "2", "--quiet"])
        assert server.completion_requests == 0
    assert res.exit_code == 2, res.output
    assert "no price for model 'my-finetune'" in res.output and "prices" in res.output
