"""Any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama, ...).

The client never retries by itself: the engine owns retries, so this module only
sorts each failure into fatal (a specc EndpointError), transient (retry) or
per-task (record and move on).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import sys
import time
import weakref
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai

from specc.generate.base import TaskError, TransientError
from specc.errors import AuthError, EndpointError, ModelNotFoundError
from specc.generate.base import Generation, Message, SamplingParams

OPENAI_URL = "https://api.openai.com/v1"


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for ids, logs and caches."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def retry_after(headers) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
        when = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    return None


def openai_id(model: str, namespace: str | None = None) -> str:
    """The model's identity: its name, not the URL serving it, so a model moved to another host keeps its cache.

    ``namespace`` (``generator.cache_namespace``) tells apart different models served under one name.
    """
    return f"openai:{model}" + (f"@ns={namespace}" if namespace else "")


class OpenAILLM:
    """Chat completions over HTTP with ``openai.AsyncOpenAI``."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        namespace: str | None = None,
        require_key: bool = True,
    ):
        self.model = model
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.id = openai_id(model, namespace)
        # GET /models only tells us sooner what the first completion would; see ``preflight``.
        self.preflight_timeout = min(timeout, 15.0)
        key = os.environ.get(api_key_env)
        self._has_key = bool(key)
        if require_key and not key and urlsplit(self.base_url).hostname == "api.openai.com":
            raise AuthError(f"{api_key_env} is not set; export your OpenAI API key in {api_key_env}")
        self._client_obj: openai.AsyncOpenAI | None = None
        self._client_loop: weakref.ref | None = None
        self._chat_url = ""
        self._session = None  # aiohttp.ClientSession for chat calls, when aiohttp serves this endpoint
        self._headers: dict[str, str] = {}
        self._json_ok = True
        self._max_tokens_field = "max_tokens"

    @property
    def _client(self) -> openai.AsyncOpenAI:
        """One client per event loop: its connection pool belongs to the loop that made it."""
        loop = asyncio.get_running_loop()
        if self._client_loop is None or self._client_loop() is not loop:
            # Local servers (vLLM, llama.cpp, Ollama) ignore the key but the client requires one.
            key = os.environ.get(self.api_key_env) or "EMPTY"
            http = http_client(self.base_url, self.timeout)
            self._client_obj = openai.AsyncOpenAI(
                api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0, http_client=http,
            )
            self._client_loop = weakref.ref(loop)
            # The SDK merges a relative path with its base URL on every call, parsing the URL once more;
            # the merged URL, made once, is the same string.
            base = self._client_obj.base_url
            self._chat_url = str(base.copy_with(raw_path=base.raw_path + b"chat/completions"))
            self._session = chat_session(self._chat_url, self.timeout) if http is not None else None
            # The SDK's own headers (key, organisation, project, user agent), as it would send them.
            headers = {**self._client_obj.default_headers, **self._client_obj.auth_headers}
            self._headers = {k: v for k, v in headers.items() if isinstance(v, str)}  # Omit() marks a header unset
            self._headers["Content-Type"] = "application/json"
        return self._client_obj

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client of the running event loop, for the batch executor's files and batches calls."""
        return self._client

    def classify(self, e: Exception) -> Exception:
        """An SDK exception as a specc error (fatal), TransientError (retry) or TaskError (this task only)."""
        return self._classify(e)

    def _where(self) -> str:
        return public_url(self.base_url)

    def _auth_error(self, e: openai.APIStatusError) -> AuthError:
        why = "no key was set" if not self._has_key else "the key was rejected"
        return AuthError(
            f"{self._where()} answered HTTP {e.status_code} ({why}): set a valid key in the environment "
            f"variable {self.api_key_env} ({_message(e)})"
        )

    async def preflight(self) -> str | None:
        """Fail within seconds on a wrong URL, a bad key or an unknown model (GET /models); return a warning, if any.

        A slow answer is only a warning: llama.cpp's server, for one, answers /models only between
        generations, so a busy but healthy server must not fail the build. Completions have their own
        timeouts and retries.
        """
        wait = self.preflight_timeout
        try:
            page = await self._client.models.list(timeout=wait)
            served = [m.id for m in page.data]
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise self._auth_error(e) from None
        except openai.APIConnectionError as e:  # APITimeoutError included
            if _connect_failed(e):  # refused, unknown host, TLS: nothing is there
                raise EndpointError(
                    f"cannot reach {self._where()}: {_cause(e)}; is the server running and base_url right?"
                ) from None
            if _timed_out(e):
                return (
                    f"{self._where()} did not list its models within {wait:g} s (a server busy generating may not "
                    f"answer until it is idle); going on with the normal timeout ({self.timeout:g} s) and retries"
                )
            return f"{self._where()} did not finish listing its models ({_cause(e)}); going on with retries"
        except (openai.APIStatusError, openai.APIResponseValidationError, ValueError, TypeError, AttributeError):
            return None  # some servers have no usable /models; the first completion will tell
        if served and self.model not in served:
            shown = ", ".join(sorted(served)[:10]) + (", ..." if len(served) > 10 else "")
            raise ModelNotFoundError(f"model {self.model!r} is not served by {self._where()} (it serves: {shown})")
        return None

    def body(self, messages: list[Message], params: SamplingParams) -> dict:
        """The request this endpoint gets for a task, with the parameters it is known to reject left out."""
        return chat_body(self.model, messages, params, json_ok=self._json_ok, max_tokens_field=self._max_tokens_field)

    def adapt(self, message: str, param: str | None, body: dict) -> bool:
        """Remember a parameter of ``body`` the endpoint rejected (HTTP 400); True when a retry would differ."""
        text = message.lower()
        if "response_format" in body and (param == "response_format" or "response_format" in text):
            self._json_ok = False
            return True
        if "max_tokens" in body and "max_completion_tokens" in text:
            self._max_tokens_field = "max_completion_tokens"
            return True
        return False

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        t0 = time.monotonic()
        while True:
            body = self.body(messages, params)
            try:
                resp = await self._post(body)
                break
            except openai.BadRequestError as e:
                # Endpoints that reject a parameter are remembered for the rest of the run.
                if self.adapt(_message(e), e.param, body):
                    continue
                raise self._classify(e) from None
            except Exception as e:  # noqa: BLE001 - sorted into fatal / transient / per-task below
                raise self._classify(e) from None
        return to_generation(resp, messages, time.monotonic() - t0, self.model)

    async def _post(self, body: dict) -> dict:
        """One chat completions request: the response's JSON, or the exception the SDK raises for its status.

        Over aiohttp, the request goes out directly with the SDK client's URL and headers: the SDK's
        per-request machinery (options, header merging, URL parsing, its httpx2 layer) cost more client
        CPU than the HTTP exchange itself, about 0.3 ms a call. Without aiohttp, the SDK posts it.
        """
        client = self._client
        if self._session is None:
            raw = await client.post(self._chat_url, body=body, cast_to=httpx2.Response)
            return raw.json()
        async with self._session.post(self._chat_url, data=json.dumps(body).encode(), headers=self._headers) as r:
            content = await r.read()
            if not 200 <= r.status < 300:
                raise status_error(r.status, r.headers, content, self._chat_url)
        return json.loads(content)

    def _classify(self, e: Exception) -> Exception:
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self._auth_error(e)
        if isinstance(e, openai.NotFoundError):
            if e.code == "model_not_found" or self.model in _message(e):
                return ModelNotFoundError(f"model {self.model!r} is not served by {self._where()} ({_message(e)})")
            return EndpointError(
                f"{self._where()} has no chat completions endpoint (HTTP 404); check base_url (it usually ends in /v1)"
            )
        if isinstance(e, openai.RateLimitError):
            if e.code == "insufficient_quota":
                return EndpointError(
                    f"{self._where()}: quota exhausted for the key in {self.api_key_env} ({_message(e)})"
                )
            return TransientError("HTTP 429 rate limited", retry_after=retry_after(e.response.headers))
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            if status >= 500 or status in (408, 409):
                return TransientError(f"HTTP {status}", retry_after=retry_after(e.response.headers))
            return TaskError(f"HTTP {status}: {_message(e)}")
        aiohttp = sys.modules.get("aiohttp")
        if aiohttp is not None and isinstance(e, (aiohttp.ClientError, asyncio.TimeoutError)):  # the direct post
            if isinstance(e, aiohttp.ClientConnectorError):
                return TransientError(f"cannot connect to {self._where()}: {e}", unreachable=True)
            if isinstance(e, asyncio.TimeoutError):
                return TransientError(f"timed out after {self.timeout:g} s")
            return TransientError(f"connection dropped: {e or type(e).__name__}")
        if isinstance(e, openai.APIConnectionError) and _connect_failed(e):
            return TransientError(f"cannot connect to {self._where()}: {_cause(e)}", unreachable=True)
        if _timed_out(e):
            return TransientError(f"timed out after {self.timeout:g} s")
        if isinstance(e, openai.APIConnectionError):
            return TransientError(f"connection dropped: {_cause(e)}")
        if isinstance(e, (openai.APIResponseValidationError, ValueError)):
            return TransientError(f"malformed response: {type(e).__name__}")
        return e

    async def aclose(self) -> None:
        """Close the client's connections; call it in the event loop that made them (``Engine.run_sync`` does).

        An aiohttp pool left open is reported as an unclosed session when it is collected.
        """
        if self._session is not None:
            await self._session.close()
        if self._client_obj is not None:
            await self._client_obj.close()
        self._client_obj = self._client_loop = self._session = None


def http_client(base_url: str, timeout: float) -> httpx2.AsyncClient | None:
    """The SDK's aiohttp transport (``openai.DefaultAioHttpClient``), or None for the SDK's own httpx2 pool.

    At hundreds of calls a second the httpx2/httpcore2 pool cost more client CPU than anything else in
    a call; the aiohttp transport costs about a quarter of that. Limits, timeouts and redirects stay the
    SDK's defaults either way. httpx2 serves when aiohttp is not installed, and for a URL carrying
    credentials: httpx2 sends them as basic auth in place of the key, aiohttp refuses the pair.
    """
    parts = urlsplit(base_url)
    if parts.username or parts.password:
        return None
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    return openai.DefaultAioHttpClient(timeout=timeout)


def chat_session(url: str, timeout: float):
    """The aiohttp session chat calls go out on: no cap of its own on connections (the engine bounds them), the
    SDK's timeout for connecting and for each read, and the proxy the environment names for ``url``.

    The proxy is looked up once here: aiohttp's ``trust_env`` looks it up (and reads ~/.netrc) on a worker
    thread for every request, which cost more than the request.
    """
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
        proxy=env_proxy(url),
    )


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts its host."""
    import urllib.request

    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


# The SDK's exception class for each error status (``AsyncOpenAI._make_status_error``).
_STATUS_ERRORS = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(status: int, headers, content: bytes, url: str) -> openai.APIStatusError:
    """The exception the SDK raises for an error response: its class, message, body, code and param."""
    response = httpx2.Response(status, headers=list(headers.items()), content=content,
                               request=httpx2.Request("POST", url))
    text = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    error = body.get("error", body) if isinstance(body, dict) else None
    message = f"Error code: {status}"
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        message += f" - {error['message']}"
    cls = openai.InternalServerError if status >= 500 else _STATUS_ERRORS.get(status, openai.APIStatusError)
    return cls(message, response=response, body=body.get("error", body) if isinstance(body, dict) else body)


def chat_body(
    model: str, messages: list[Message], params: SamplingParams, *, json_ok: bool = True, max_tokens_field: str = "max_tokens"
) -> dict:
    """The chat completions request for a task; one function, so a batch line is exactly the synchronous call."""
    body: dict = {
        "model": model,
        "messages": [dict(m) for m in messages],
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    body[max_tokens_field] = params.max_tokens
    if params.json_mode and json_ok:
        body["response_format"] = {"type": "json_object"}
    return body


def to_generation(resp, messages: list[Message], latency: float, model: str) -> Generation:
    """A chat.completion response body as a Generation; TransientError when it has no choices."""
    try:
        choice = resp["choices"][0]
        text = choice["message"].get("content") or ""
        usage = resp.get("usage") or {}
        finish = choice.get("finish_reason") or "stop"
    except (KeyError, IndexError, TypeError, AttributeError):
        raise TransientError("malformed response: no choices") from None
    if usage.get("prompt_tokens") is not None:
        tin, tout = int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
    else:  # servers that omit usage: a rough estimate is better than zero for cost and rate limits
        tin = sum(len(m.get("content", "")) for m in messages) // 4
        tout = len(text) // 4
    return Generation(
        text=text,
        finish_reason=finish,
        input_tokens=tin,
        output_tokens=tout,
        model=resp.get("model") or model,
        latency_s=latency,
    )


def _message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return e.message


def _aiohttp_cause(e: BaseException) -> BaseException | None:
    """The aiohttp exception behind an SDK error, when the aiohttp transport raised it."""
    aiohttp = sys.modules.get("aiohttp")  # not imported: the aiohttp transport was never used
    inner = e.__cause__.__cause__ if e.__cause__ is not None else None
    return inner if aiohttp is not None and isinstance(inner, aiohttp.ClientError) else None


def _connect_failed(e: BaseException) -> bool:
    """True when no connection could be made (refused, unknown host, TLS), whichever transport tried.

    The aiohttp transport reports every lost connection as httpx2.ConnectTimeout (an APITimeoutError),
    so aiohttp's own exception decides, not the SDK's class.
    """
    if isinstance(e.__cause__, httpx2.ConnectError):
        return True
    inner = _aiohttp_cause(e)
    return inner is not None and isinstance(inner, sys.modules["aiohttp"].ClientConnectorError)


def _timed_out(e: BaseException) -> bool:
    """An APITimeoutError that is a timeout (see ``_connect_failed``), not a connection the server closed."""
    inner = _aiohttp_cause(e)
    return isinstance(e, openai.APITimeoutError) and (inner is None or isinstance(inner, asyncio.TimeoutError))


def _cause(e: BaseException) -> str:
    cause = e.__cause__ or e
    return str(cause) or type(cause).__name__
