"""The OpenAI Batch API for the fake server: files (multipart upload, content) and batches (create, retrieve, cancel, list).

A batch goes validating -> in_progress -> completed when the test lets it: after ``polls`` retrieves
of it, after ``seconds`` since it was created, and not while ``hold`` is set. Its lines are answered
by the server's own responder (``FakeServer.answer``), so a batch result is exactly what a synchronous
call returns. Failed lines, expiry and cancellation are injected by the test.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlsplit

ENDED = ("completed", "expired", "cancelled", "failed")


class BatchAPI:
    """The state of the fake Batch API, and the knobs a test turns."""

    def __init__(
        self,
        server,
        *,
        seconds: float = 0.0,
        polls: int = 1,
        hold: bool = False,
        fail_rate: float = 0.0,
        fail_status: int = 500,
        max_lines: int = 50_000,
        max_bytes: int = 200_000_000,
    ):
        self.server = server
        self.seconds = seconds  # a batch runs at least this long
        self.polls = polls  # ... and is seen in progress by this many retrieves first
        self.hold = hold  # while set, no batch finishes
        self.fail_rate = fail_rate  # share of lines failing on their first attempt (by hash, so reproducible)
        self.fail_status = fail_status
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.expire_next: collections.deque[int] = collections.deque()  # the next batches to finish expire, keeping n lines
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.created: list[str] = []  # batch ids in the order they were created
        self.lines_run: collections.Counter = collections.Counter()  # custom_id -> times a batch answered it
        self.lines_failed: collections.Counter = collections.Counter()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- what a test calls ------------------------------------------------------------
    def release(self) -> None:
        """Let held batches finish."""
        self.hold = False

    def open_batches(self) -> list[dict]:
        with self._lock:
            return [b for b in self.batches.values() if b["status"] not in ENDED]

    def requests_of(self, batch_id: str) -> list[str]:
        """The custom_ids of a batch's input file, in order."""
        return [line["custom_id"] for line in self._lines(self.batches[batch_id])]

    # -- HTTP -------------------------------------------------------------------------------
    def handles(self, path: str) -> bool:
        p = urlsplit(path).path
        return p.startswith("/v1/files") or p.startswith("/v1/batches")

    def handle(self, h, method: str, raw: bytes) -> None:
        url = urlsplit(h.path)
        parts = url.path.rstrip("/").split("/")[2:]  # after /v1
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            status, obj = self._route(method, parts, query, raw, h.headers.get("Content-Type", ""))
        if isinstance(obj, bytes):
            h._send_raw(status, obj)
        else:
            h._send_json(status, obj)

    def _route(self, method, parts, query, raw, ctype):
        if parts == ["files"] and method == "POST":
            return self._upload(raw, ctype)
        if len(parts) == 2 and parts[0] == "files" and method == "GET":
            f = self.files.get(parts[1])
            return (200, _public(f)) if f else _missing("file", parts[1])
        if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and method == "GET":
            f = self.files.get(parts[1])
            return (200, f["data"]) if f else _missing("file", parts[1])
        if parts == ["batches"] and method == "POST":
            return self._create(json.loads(raw))
        if parts == ["batches"] and method == "GET":
            return self._list(int(query.get("limit", 20)), query.get("after"))
        if len(parts) == 2 and parts[0] == "batches" and method == "GET":
            b = self.batches.get(parts[1])
            if b is None:
                return _missing("batch", parts[1])
            self._advance(b, poll=True)
            return 200, _public(b)
        if len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel" and method == "POST":
            b = self.batches.get(parts[1])
            if b is None:
                return _missing("batch", parts[1])
            if b["status"] not in ENDED:
                b["status"], b["cancelling_at"] = "cancelling", int(time.time())
            return 200, _public(b)
        return 404, {"error": {"message": f"Unknown path /v1/{'/'.join(parts)}", "type": "invalid_request_error"}}

    def _upload(self, raw: bytes, ctype: str):
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields, filename, data = {}, "upload.jsonl", b""
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None or name == "file":
                filename, data = part.get_filename() or filename, part.get_payload(decode=True) or b""
            else:
                fields[name] = part.get_content().strip()
        if fields.get("purpose") != "batch":
            return 400, {"error": {"message": "purpose must be batch", "type": "invalid_request_error"}}
        if len(data) > self.max_bytes:
            return 400, {"error": {"message": f"file of {len(data)} bytes is over {self.max_bytes}",
                                   "type": "invalid_request_error"}}
        f = {"id": f"file-{next(self._ids)}", "object": "file", "bytes": len(data), "created_at": int(time.time()),
             "filename": filename, "purpose": "batch", "status": "processed", "data": data}
        self.files[f["id"]] = f
        return 200, _public(f)

    def _create(self, req: dict):
        f = self.files.get(req.get("input_file_id"))
        if f is None:
            return _missing("file", req.get("input_file_id"))
        now = int(time.time())
        b = {"id": f"batch_{next(self._ids)}", "object": "batch", "endpoint": req["endpoint"], "errors": None,
             "input_file_id": f["id"], "completion_window": req["completion_window"], "status": "validating",
             "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
             "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
             "expired_at": None, "cancelling_at": None, "cancelled_at": None,
             "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": req.get("metadata"),
             "_t0": time.monotonic(), "_polls": 0}
        problems = self._validate(b, f["data"])
        if problems:
            b.update(status="failed", failed_at=now, errors={"object": "list", "data": problems})
        else:
            b["request_counts"]["total"] = len(self._lines(b))
        self.batches[b["id"]] = b
        self.created.append(b["id"])
        return 200, _public(b)

    def _validate(self, b: dict, data: bytes) -> list[dict]:
        try:
            lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
        except ValueError as e:
            return [{"code": "invalid_json_line", "message": str(e), "line": None, "param": None}]
        if len(lines) > self.max_lines:
            return [{"code": "too_many_requests", "message": f"{len(lines)} requests, over {self.max_lines}",
                     "line": None, "param": None}]
        ids = collections.Counter(x.get("custom_id") for x in lines)
        for n, x in enumerate(lines, 1):
            if x.get("url") != b["endpoint"] or x.get("method") != "POST":
                return [{"code": "invalid_url", "message": "url must match the batch endpoint", "line": n, "param": "url"}]
            if ids[x.get("custom_id")] > 1:
                return [{"code": "duplicate_custom_id", "message": "custom_id must be unique", "line": n,
                         "param": "custom_id"}]
        return []

    def _list(self, limit: int, after: str | None):
        ordered = [self.batches[i] for i in reversed(self.created)]  # newest first, as the API lists them
        if after is not None:
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        page = ordered[:limit]
        return 200, {"object": "list", "data": [_public(b) for b in page],
                     "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
                     "has_more": len(ordered) > limit}

    # -- processing ----------------------------------------------------------------------------
    def _lines(self, b: dict) -> list[dict]:
        data = self.files[b["input_file_id"]]["data"]
        return [json.loads(x) for x in data.decode().splitlines() if x.strip()]

    def _advance(self, b: dict, *, poll: bool) -> None:
        if b["status"] in ENDED:
            return
        b["_polls"] += poll
        total = b["request_counts"]["total"]
        if b["status"] == "cancelling":
            self._finish(b, "cancelled", keep=b["request_counts"]["completed"])
            return
        elapsed = time.monotonic() - b["_t0"]
        if not self.hold and b["_polls"] >= self.polls and elapsed >= self.seconds:
            if self.expire_next:
                self._finish(b, "expired", keep=self.expire_next.popleft())
            else:
                self._finish(b, "completed", keep=total)
            return
        if b["status"] == "validating":
            b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        share = 0.0 if self.hold else min(b["_polls"] / max(self.polls, 1), elapsed / self.seconds if self.seconds else 1)
        b["request_counts"]["completed"] = min(total - 1, int(total * share)) if total else 0

    def _finish(self, b: dict, status: str, keep: int) -> None:
        """Answer the first ``keep`` lines; the rest were not run (in the error file when it expired)."""
        out, err = [], []
        lines = self._lines(b)
        for n, line in enumerate(lines):
            cid = line["custom_id"]
            if n >= keep:
                if status == "expired":
                    err.append({"id": f"batch_req_{cid[:12]}", "custom_id": cid, "response": None,
                                "error": {"code": "batch_expired",
                                          "message": "This request could not be executed before the completion "
                                                     "window expired."}})
                continue
            attempt = self.lines_run[cid]
            self.lines_run[cid] += 1
            status_code, body = self.server.answer(line["body"])
            if status_code == 200 and self._fails(cid, attempt):
                status_code, body = self.fail_status, {"error": {"message": "The server had an error processing "
                                                                          "your request.", "type": "server_error"}}
            row = {"id": f"batch_req_{cid[:12]}", "custom_id": cid,
                   "response": {"status_code": status_code, "request_id": f"req_{cid[:12]}", "body": body},
                   "error": None}
            if status_code == 200:
                out.append(row)
            else:
                self.lines_failed[cid] += 1
                err.append(row)
        now = int(time.time())
        b.update(status=status, finalizing_at=now, **{f"{status}_at": now})
        b["request_counts"].update(completed=len(out), failed=sum(1 for r in err if r["response"]))
        for kind, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                f = {"id": f"file-{next(self._ids)}", "object": "file", "bytes": len(data), "created_at": now,
                     "filename": f"{b['id']}_{kind[:-8]}.jsonl", "purpose": "batch_output", "status": "processed",
                     "data": data}
                self.files[f["id"]] = f
                b[kind] = f["id"]

    def _fails(self, custom_id: str, attempt: int) -> bool:
        if attempt > 0 or self.fail_rate <= 0:
            return False
        h = int(hashlib.sha256(custom_id.encode()).hexdigest()[:8], 16) / 16**8
        return h < self.fail_rate


def _public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_") and k != "data"}


def _missing(what: str, ident) -> tuple[int, dict]:
    return 404, {"error": {"message": f"No such {what}: {ident}", "type": "invalid_request_error"}}


def run_file(url: str, requests: str, results: str, poll: float = 0.05) -> int:
    """Run a batch file through a server's Batch API and write its output file: a stand-in for `vllm run_batch`."""
    import openai

    client = openai.OpenAI(api_key="unused", base_url=url)
    with open(requests, "rb") as f:
        uploaded = client.files.create(file=f, purpose="batch")
    b = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    while b.status not in ENDED:
        time.sleep(poll)
        b = client.batches.retrieve(b.id)
    lines = b""
    for file_id in (b.output_file_id, b.error_file_id):
        if file_id:
            lines += client.files.content(file_id).content
    with open(results, "wb") as f:
        f.write(lines)
    return lines.count(b"\n")


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Run an OpenAI-format batch file through a fake server, as "
                                             "`python -m vllm.entrypoints.openai.run_batch -i IN -o OUT` would.")
    ap.add_argument("-i", "--input-file", required=True)
    ap.add_argument("-o", "--output-file", required=True)
    ap.add_argument("--url", required=True, help="the fake server's /v1 URL")
    args = ap.parse_args(argv)
    n = run_file(args.url, args.input_file, args.output_file)
    print(f"{n} results in {args.output_file}")


if __name__ == "__main__":
    main()
