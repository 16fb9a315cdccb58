"""Shared fixtures: every test runs with specc's home and cache in tmp_path and no credentials."""

from __future__ import annotations

import os

import pytest

from fakeserver import FakeServer

_SCRUB = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Point SPECC_HOME/SPECC_CACHE at tmp_path and remove keys and SPECC_* settings."""
    for name in list(os.environ):
        if name in _SCRUB or name.startswith("SPECC_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPECC_HOME", str(tmp_path / "specc-home"))
    monkeypatch.setenv("SPECC_CACHE", str(tmp_path / "cache.sqlite"))


@pytest.fixture
def fake_server(request):
    """A started FakeServer; parametrize indirectly with a dict of FakeServer kwargs to configure it."""
    with FakeServer(**getattr(request, "param", {})) as server:
        yield server


@pytest.fixture
def cache_queries(monkeypatch):
    """``queries = cache_queries()`` counts the cache's ``get`` and ``get_many`` calls from then on."""
    from specc.generate.cache import Cache

    def start() -> dict[str, int]:
        queries = {"get": 0, "get_many": 0}
        for name in queries:
            real = getattr(Cache, name)

            def counted(self, *a, _real=real, _name=name, **k):
                queries[_name] += 1
                return _real(self, *a, **k)

            monkeypatch.setattr(Cache, name, counted)
        return queries

    return start
