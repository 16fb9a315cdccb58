"""A real OpenAI-compatible HTTP server on loopback that can be told to be slow or to fail.

Deterministic from the prompt: the default reply and the per-request latency are
derived from sha256 of the messages, so a test (or the benchmark) can predict both.
Runnable as a script: ``python tests/fakeserver.py --port 0`` prints its URL first.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from fakebatch import BatchAPI

FAULTS = ("429", "500", "hang", "drop", "malformed", "length")
WORDS = (
    "the assistant explains why honesty matters and what a careful answer looks like when a user "
    "asks for help with a hard problem in science history law cooking travel music code health "
    "money family work school sport weather language art design games books film"
).split()


@dataclass
class Reply:
    """What a responder returns to choose the finish reason, or (``status`` != 200) to fail with an error."""

    text: str
    finish_reason: str = "stop"
    status: int = 200


def prompt_sha(messages) -> str:
    """sha256 of the messages as canonical JSON (the same hash as ``specc.records.sha256_hex``)."""
    data = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def latency_for(messages, latency: tuple[float, float], seed: int = 0) -> float:
    """The delay the server adds before answering these messages."""
    lo, hi = latency
    if hi <= lo:
        return lo
    h = int(hashlib.sha256(f"{seed}:{prompt_sha(messages)}".encode()).hexdigest()[:12], 16)
    return lo + (hi - lo) * (h / float(16**12))


def default_responder(body: dict) -> str:
    """Deterministic text (or a JSON object in json mode) from the hash of the messages."""
    sha = prompt_sha(body.get("messages", []))
    rng = random.Random(sha)
    n = 20 + rng.randrange(30)
    text = f"Reply {sha[:12]}: " + " ".join(rng.choice(WORDS) for _ in range(n)) + "."
    if (body.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"id": sha[:12], "text": text})
    return text


def _count_tokens(text: str) -> int:
    return len(text.split())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open keep-alive connection, as a dying server would."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        # Clients that time out or go away mid-response are part of the game, not errors.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ValueError)):
            super().handle_error(request, client_address)


class FakeServer:
    """OpenAI-compatible chat completions on 127.0.0.1 with injectable faults."""

    def __init__(
        self,
        responder: Callable[[dict], str | Reply] | None = None,
        *,
        latency: tuple[float, float] = (0.0, 0.0),
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        models: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
        hang_seconds: float = 30.0,
        retry_after: float = 0.05,
        accept_response_format: bool = True,
        count_file: Path | str | None = None,
        port: int = 0,
        models_delay: float = 0.0,
        batch: dict | None = None,
    ):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.responder = responder or default_responder
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.seed = seed
        self.models = tuple(models)
        self.api_key = api_key
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.accept_response_format = accept_response_format
        self.count_file = Path(count_file) if count_file else None
        self.port = port
        # Seconds GET /models takes, as on a llama.cpp server that answers it only between generations.
        self.models_delay = models_delay
        self.requests = 0
        self.completion_requests = 0
        self.completions = 0
        self.faults_served: collections.Counter = collections.Counter()
        self.calls_by_prompt: collections.Counter = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._forced: collections.deque[str] = collections.deque()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.batch = BatchAPI(self, **(batch or {}))  # the Batch API endpoints, driven by the test

    # -- control -----------------------------------------------------------
    def force(self, fault: str, n: int = 1) -> None:
        """The next ``n`` chat-completion requests get ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        with self._lock:
            self._forced.extend([fault] * n)

    def start(self) -> FakeServer:
        self._httpd = _HTTPServer(("127.0.0.1", self.port), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.drop_connections()
            self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, body: dict) -> tuple[int, dict]:
        """(status, response body) for a request, without latency or faults: what a batch line gets."""
        if body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            return 404, _error(message, "invalid_request_error", "model_not_found")
        if body.get("response_format") and not self.accept_response_format:
            return 400, _error("response_format is not supported", "invalid_request_error", None, "response_format")
        out = self.responder(body)
        reply = out if isinstance(out, Reply) else Reply(str(out))
        if reply.status != 200:
            return reply.status, _error(reply.text, "server_error" if reply.status >= 500 else "invalid_request_error")
        return 200, completion(body, reply)

    # -- internals ---------------------------------------------------------
    def _next_fault(self) -> str | None:
        with self._lock:
            if self._forced:
                return self._forced.popleft()
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
        return None

    def _record_completion(self, sha: str) -> None:
        with self._lock:
            self.completions += 1
            self.calls_by_prompt[sha] += 1
            if self.count_file is not None:
                with open(self.count_file, "a", encoding="utf-8") as f:
                    f.write(sha + "\n")


def completion(body: dict, reply: Reply) -> dict:
    """The chat.completion object answering ``body`` with ``reply`` (shared by the batch endpoints)."""
    messages = body.get("messages", [])
    prompt_tokens = sum(_count_tokens(str(m.get("content", ""))) for m in messages)
    return {
        "id": f"chatcmpl-{prompt_sha(messages)[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _count_tokens(reply.text),
            "total_tokens": prompt_tokens + _count_tokens(reply.text),
        },
    }


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _make_handler(server: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, delayed ACKs add 40 ms to each reply.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send_json(self, status: int, obj: dict, headers: dict | None = None) -> None:
            data = json.dumps(obj).encode()
            self._send_raw(status, data, headers)

        def _send_raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if server.api_key is None:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {server.api_key}":
                return True
            self._send_json(
                401,
                _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            )
            return False

        def do_GET(self) -> None:
            with server._lock:
                server.requests += 1
            if not self._authorised():
                return
            if server.batch.handles(self.path):
                server.batch.handle(self, "GET", b"")
                return
            if self.path.rstrip("/") == "/v1/models":
                if server.models_delay and server._stopping.wait(server.models_delay):
                    return
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, _error(f"Unknown path {self.path}", "invalid_request_error"))

        def do_POST(self) -> None:
            with server._lock:
                server.requests += 1
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._authorised():
                return
            if server.batch.handles(self.path):
                server.batch.handle(self, "POST", raw)
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send_json(404, _error(f"Unknown path {self.path}", "invalid_request_error"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send_json(400, _error("We could not parse the JSON body.", "invalid_request_error"))
                return
            model = body.get("model")
            if model not in server.models:
                self._send_json(
                    404,
                    _error(
                        f"The model `{model}` does not exist or you do not have access to it.",
                        "invalid_request_error",
                        "model_not_found",
                    ),
                )
                return
            if body.get("response_format") and not server.accept_response_format:
                self._send_json(
                    400,
                    _error("response_format is not supported", "invalid_request_error", None, "response_format"),
                )
                return
            with server._lock:
                server.completion_requests += 1
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._complete(body)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _complete(self, body: dict) -> None:
            messages = body.get("messages", [])
            sha = prompt_sha(messages)
            fault = server._next_fault()
            if fault:
                with server._lock:
                    server.faults_served[fault] += 1
            delay = latency_for(messages, server.latency, server.seed)
            if delay and server._stopping.wait(delay):
                return
            if fault == "429":
                wait = server.retry_after
                headers = {"Retry-After": f"{wait:g}", "retry-after-ms": str(int(wait * 1000))}
                self._send_json(429, _error("Rate limit reached.", "requests", "rate_limit_exceeded"), headers)
                return
            if fault == "500":
                self._send_json(500, _error("The server had an error processing your request.", "server_error"))
                return
            if fault == "hang":
                server._stopping.wait(server.hang_seconds)
                self.close_connection = True
                return
            if fault == "malformed":
                self._send_raw(200, b'{"id": "chatcmpl-x", "choices": [{"message": ')
                return
            out = server.responder(body)
            reply = out if isinstance(out, Reply) else Reply(str(out))
            if reply.status != 200:
                kind = "server_error" if reply.status >= 500 else "invalid_request_error"
                self._send_json(reply.status, _error(reply.text, kind))
                return
            if fault == "length":
                words = reply.text.split()
                reply = Reply(" ".join(words[: max(1, len(words) // 3)]), "length")
            resp = completion(body, reply)
            data = json.dumps(resp).encode()
            if fault == "drop":
                # Promise the whole body, send half, then cut the connection.
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.close_connection = True
                return
            # Count before sending: once the client may have read it, it is a completion.
            server._record_completion(sha)
            self._send_raw(200, data)

    return Handler


def _responder(name: str):
    if name == "words":
        return None
    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))
    from responder import StageResponder, TargetResponder

    if name == "stages":
        return StageResponder()
    if name.startswith("follows="):
        return TargetResponder(float(name.split("=", 1)[1]))
    raise SystemExit(f"unknown --responder {name!r}: use words, stages or follows=F")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A fake OpenAI-compatible server for tests and benchmarks.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", default="0,0", help="min,max seconds per request, e.g. 0.05,0.3")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="fake-model")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--hang-seconds", type=float, default=30.0)
    ap.add_argument("--count-file", default=None, help="append one line (prompt sha) per successful completion")
    ap.add_argument("--models-delay", type=float, default=0.0, help="seconds GET /models takes to answer")
    ap.add_argument("--retry-after", type=float, default=0.05, help="seconds a 429 asks the client to wait")
    ap.add_argument("--responder", default="words",
                    help="words: deterministic filler; stages: answers in the shape each specc stage asks for; "
                    "follows=F: a model under test that keeps to the principles in about F of its replies")
    ap.add_argument("--batch-seconds", type=float, default=0.0, help="seconds a batch takes to complete")
    ap.add_argument("--batch-polls", type=int, default=1, help="retrieves that see a batch in progress first")
    ap.add_argument("--batch-fail-rate", type=float, default=0.0, help="share of batch lines failing once")
    ap.add_argument("--batch-max-lines", type=int, default=50_000, help="requests a batch file may hold")
    args = ap.parse_args(argv)
    lo, _, hi = args.latency.partition(",")
    responder = _responder(args.responder)
    server = FakeServer(
        responder,
        latency=(float(lo), float(hi or lo)),
        fault_rate=args.fault_rate,
        faults=tuple(f for f in args.faults.split(",") if f),
        seed=args.seed,
        models=tuple(args.models.split(",")),
        api_key=args.api_key,
        hang_seconds=args.hang_seconds,
        count_file=args.count_file,
        port=args.port,
        models_delay=args.models_delay,
        retry_after=args.retry_after,
        batch={"seconds": args.batch_seconds, "polls": args.batch_polls, "fail_rate": args.batch_fail_rate,
               "max_lines": args.batch_max_lines},
    ).start()
    print(server.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
