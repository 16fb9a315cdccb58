"""A build with an API key, an HF token and a password in base_url writes none of them anywhere."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakehub import FakeHub  # noqa: E402
from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

API_KEY = "sk-specctestSECRETkey0123456789abcdef"
HF_TOKEN = "hf_specctestSECRETtoken0123456789abcd"
PASSWORD = "pw-SECRET-in-url-4242"
SECRETS = (API_KEY, HF_TOKEN, PASSWORD)


def _readable(path: Path) -> bytes:
    """The file's bytes, plus its decoded content where it is compressed (parquet pages, gzip)."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        data += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
    elif path.suffix == ".gz":
        data += gzip.decompress(data)
    return data


def _leaks(blobs: dict[str, bytes]) -> list[str]:
    return [f"{name} holds {secret[:8]}..." for name, blob in blobs.items() for secret in SECRETS if secret.encode() in blob]


def test_no_secret_reaches_any_file_or_log(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    d = spec_dict(2)
    with FakeServer(StageResponder()) as server, FakeHub(token=HF_TOKEN) as hub:
        # Credentials in the URL make the client send HTTP basic auth, which a proxy would check.
        url = server.url.replace("http://", f"http://specc-user:{PASSWORD}@")
        d["generator"] = {"provider": "openai", "model": "fake-model", "base_url": url}
        d["output"] = {"dir": "out", "hub": {"repo": "example/secret-test"}}
        spec = write_spec(work / "spec.yaml", d)
        env = {
            **os.environ,
            "OPENAI_API_KEY": API_KEY,
            "HF_TOKEN": HF_TOKEN,
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "SPECC_CACHE": str(work / ".specc" / "cache.sqlite"),
        }
        env.pop("HF_HUB_OFFLINE", None)
        logs = {}
        for name, args in {
            "build": ["build", str(spec), "--push"],
            "rebuild": ["build", str(spec)],
            "plan": ["plan", str(spec)],
            "stats": ["stats", str(work / "out")],
            "show": ["show", str(work / "out"), "-n", "2"],
            "cache stats": ["cache", "stats", str(spec)],
        }.items():
            res = subprocess.run([sys.executable, "-m", "specc", *args], capture_output=True, env=env, timeout=240)
            assert res.returncode == 0, (name, res.stdout.decode()[-2000:], res.stderr.decode()[-2000:])
            logs[f"{name} output"] = res.stdout + res.stderr
        assert server.completions > 0 and hub.repo("example/secret-test").commits
        pushed = {f"hub:{k}": v for k, v in hub.files("example/secret-test").items()}

    files = {
        str(p.relative_to(tmp_path)): _readable(p)
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and p != spec  # the spec is where the user put the URL
    }
    assert any(name.endswith("cache.sqlite") for name in files) and any("report" in name for name in files)
    assert any(name.endswith("README.md") for name in files) and any(name.endswith(".parquet") for name in files)
    assert not _leaks({**files, **logs, **pushed})
    # The endpoint is still named where it helps, without its credentials.
    assert f"specc-user:{PASSWORD}@" not in logs["build output"].decode()


def test_the_batch_path_writes_no_secret_either(tmp_path):
    """Batch files, batch records in the cache, exported waves and every log stay free of credentials."""
    work = tmp_path / "work"
    work.mkdir()
    d = spec_dict(2)
    with FakeServer(StageResponder()) as server:
        url = server.url.replace("http://", f"http://specc-user:{PASSWORD}@")
        d["generator"] = {"provider": "openai", "model": "fake-model", "base_url": url,
                          "batch_options": {"poll_seconds": 0.02}}
        d["output"] = {"dir": "out"}
        spec = write_spec(work / "spec.yaml", d)
        env = {**os.environ, "OPENAI_API_KEY": API_KEY, "SPECC_CACHE": str(work / ".specc" / "cache.sqlite")}
        logs = {}
        for name, args in {
            "batch build": ["build", str(spec), "--batch"],
            "batches": ["batches", str(spec)],
            "batches json": ["batches", str(spec), "--json"],
            "plan": ["plan", str(spec), "--batch"],
            "export": ["build", str(spec), "--budget", "6000", "--batch-export", str(work / "waves")],
        }.items():
            res = subprocess.run([sys.executable, "-m", "specc", *args], capture_output=True, env=env, timeout=240)
            assert res.returncode == 0, (name, res.stdout.decode()[-2000:], res.stderr.decode()[-2000:])
            logs[f"{name} output"] = res.stdout + res.stderr
        uploaded = {f"uploaded {i}": f["data"] for i, f in server.batch.files.items()}
        assert server.batch.created and server.completions == 0 and uploaded

    files = {str(p.relative_to(tmp_path)): _readable(p) for p in sorted(tmp_path.rglob("*")) if p.is_file() and p != spec}
    assert any(name.endswith(".jsonl") and "waves" in name for name in files)
    assert not _leaks({**files, **logs, **uploaded})
