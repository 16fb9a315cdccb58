"""A real HTTP server on loopback implementing just enough of the Hugging Face Hub API for
``HfApi.create_repo``, ``create_branch``, ``upload_folder`` (with ``delete_patterns``) and
``repo_info`` to succeed against it through ``HF_ENDPOINT``.

Every file is answered ``uploadMode: regular`` at preupload, so the client sends contents
base64-encoded in the ndjson commit and nothing goes through LFS or Xet storage. The server
keeps every repo's files per branch, so a test can compare them byte for byte with what it
pushed. Runnable as a script: ``python tests/fakehub.py --port 0`` prints its URL first.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.gz filter=lfs diff=lfs merge=lfs -text\n"
REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(rf"^/api/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("POST", re.compile(rf"^/api/{REPO}/branch/(?P<rev>[^/]+)$"), "create_branch"),
    ("GET", re.compile(rf"^/api/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("GET", re.compile(rf"^/api/{REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
]


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_type: str  # "dataset", "model" or "space"
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class FakeHub:
    """A Hub on loopback. ``token``: if set, every request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, token: str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.bodies: list[bytes] = []  # raw request bodies, for leak checks
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, payload = hub._dispatch(method, url.path, parse_qs(url.query), self.headers, body)
                    headers = {}
                except HubError as e:
                    status, payload = e.status, {"error": e.message, **e.extra}
                    headers = {"X-Error-Code": e.code} if e.code else {}
                    headers["X-Error-Message"] = e.message
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakehub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    def repo(self, repo_id: str, repo_type: str = "dataset") -> FakeRepo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """A copy of the files at the head of ``revision``."""
        with self._lock:
            return dict(self.repo(repo_id, repo_type).branches[revision])

    # ------------------------------------------------------------------ API

    def _dispatch(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, object]:
        with self._lock:
            self.requests.append((method, path))
            self.bodies.append(body)
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        for m, pattern, name in ROUTES:
            match = pattern.match(path)
            if m == method and match:
                with self._lock:
                    return getattr(self, "_" + name)(match.groupdict(), query, body)
        raise HubError(404, f"no route for {method} {path}")

    def _get_repo(self, params: dict) -> FakeRepo:
        key = (params["type"][:-1], params["repo"])
        if key not in self.repos:
            raise HubError(404, f"Repository not found: {params['repo']}", "RepoNotFound")
        return self.repos[key]

    def _branch(self, repo: FakeRepo, rev: str | None) -> str:
        rev = unquote(rev or "main")
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return rev

    def _commit_on(self, repo: FakeRepo, branch: str, summary: str, added: list[str], deleted: list[str]) -> str:
        parent = repo.heads.get(branch, "")
        state = json.dumps(sorted((p, git_blob_oid(d)) for p, d in repo.branches[branch].items()))
        oid = hashlib.sha1(f"{len(repo.commits)}\n{parent}\n{summary}\n{state}".encode()).hexdigest()
        repo.heads[branch] = oid
        repo.commits.append({"oid": oid, "branch": branch, "summary": summary, "added": added, "deleted": deleted})
        return oid

    def _repo_url(self, repo: FakeRepo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.url}/{prefix}{repo.repo_id}"

    def _create_repo(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if (repo_type, repo_id) in self.repos:
            # The Hub names the existing repo's URL, and create_repo(exist_ok=True) returns it.
            url = self._repo_url(self.repos[(repo_type, repo_id)])
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = FakeRepo(repo_type, repo_id, private, branches={"main": {".gitattributes": GITATTRIBUTES}})
        self.repos[(repo_type, repo_id)] = repo
        self._commit_on(repo, "main", "initial commit", [".gitattributes"], [])
        return 200, {"url": self._repo_url(repo), "name": repo_id, "id": repo_id}

    def _validate_yaml(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        """The Hub checks a README's front matter before accepting it; so does this, for the parts specc writes."""
        import yaml

        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if not match:
            return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as e:
            raise HubError(400, f"invalid YAML: {e}") from e
        errors = []
        for c in meta.get("configs") or []:
            if not isinstance(c, dict) or "config_name" not in c or "data_files" not in c:
                errors.append({"message": f'"configs" entry {c!r} needs config_name and data_files'})
        if not isinstance(meta.get("license", ""), str):
            errors.append({"message": '"license" must be a string'})
        if errors:
            raise HubError(400, "; ".join(e["message"] for e in errors))
        return 200, {"warnings": []}

    def _create_branch(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        repo = self._get_repo(params)
        branch = unquote(params["rev"])
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._branch(repo, (json.loads(body or b"{}").get("startingPoint")) or "main")
        repo.branches[branch] = dict(repo.branches[start])
        repo.heads[branch] = repo.heads[start]
        return 200, {}

    def _preupload(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        repo = self._get_repo(params)
        files = repo.branches[self._branch(repo, params["rev"])]
        out = []
        for f in json.loads(body)["files"]:
            current = files.get(f["path"])
            out.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(current) if current is not None else None,
                }
            )
        return 200, {"files": out, "commitOid": repo.heads.get(unquote(params["rev"]))}

    def _commit(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        repo = self._get_repo(params)
        branch = self._branch(repo, params["rev"])
        files = dict(repo.branches[branch])
        summary, added, deleted = "", [], []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding for {value.get('path')}")
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"file {value['path']} not found", "EntryNotFound")
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                for p in gone:
                    del files[p]
                deleted += gone
            else:  # lfsFile etc.: preupload never asks for them
                raise HubError(400, f"unexpected commit operation {key!r}")
        repo.branches[branch] = files
        oid = self._commit_on(repo, branch, summary, added, deleted)
        return 200, {
            "commitUrl": f"{self._repo_url(repo)}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": None,
            "success": True,
        }

    def _tree(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        repo = self._get_repo(params)
        files = repo.branches[self._branch(repo, params["rev"])]
        base = unquote(params.get("path") or "").strip("/")
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("true", "1")
        prefix = base + "/" if base else ""
        entries, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append({"type": "file", "path": p, "size": len(files[p]), "oid": git_blob_oid(files[p])})
        if not entries and not folders and base:
            raise HubError(404, f"{base} does not exist", "EntryNotFound")
        return 200, [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + entries

    def _info(self, params: dict, query: dict, body: bytes) -> tuple[int, object]:
        repo = self._get_repo(params)
        branch = self._branch(repo, params.get("rev"))
        return 200, {
            "id": repo.repo_id,
            "sha": repo.heads[branch],
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(repo.branches[branch])],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None)
    args = ap.parse_args()
    hub = FakeHub(token=args.token, host=args.host, port=args.port)
    print(hub.url, flush=True)
    try:
        hub._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
