"""`push` against a real HTTP Hub on loopback (tests/fakehub.py) through huggingface_hub's own client."""

from __future__ import annotations

import pytest
from emit_fixtures import build_info, make_records, make_spec, tree_files
from fakehub import FakeHub

from specc.emit import emit
from specc.emit.hub import push
from specc.errors import InputError, OutputError

HF_SECRET = "hf_fakeTOKENabcdefghijklmnopqrstuvwxyz0123"
OPENAI_SECRET = "sk-fakeOPENAIkey-0123456789abcdefghijklmnop"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub(token=HF_SECRET) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


def _remote(hub: FakeHub, repo: str, revision: str = "main") -> dict[str, bytes]:
    files = hub.files(repo, revision)
    assert files.pop(".gitattributes")  # the Hub's own file in every new repo
    return files


def test_push_uploads_every_file_byte_for_byte(tmp_path, hub):
    out = tmp_path / "out"
    emit(make_records(40, 20), make_spec(), out, build_info=build_info(), shard_bytes=3000)
    url = push(out, "example/corpus", token=HF_SECRET)

    assert url.startswith(f"{hub.url}/datasets/example/corpus/commit/")
    assert _remote(hub, "example/corpus") == tree_files(out)
    repo = hub.repo("example/corpus")
    assert repo.private is True
    assert repo.commits[-1]["summary"] == "specc: demo-spec 1.2.0 (40 documents, 20 demonstrations)"
    assert ("POST", "/api/datasets/example/corpus/preupload/main") in hub.requests


def test_dropped_rows_and_the_eval_suite_stay_local(tmp_path, hub):
    out = tmp_path / "out"
    recs = make_records(10, 4)
    emit(recs[2:], make_spec(), out, build_info=build_info(), dropped=[(recs[0], "judge:fail"), (recs[1], "filter:too_short")])
    assert list((out / "dropped").iterdir())
    (out / "eval").mkdir()  # a held-out suite published next to the corpus would not be held out for long
    (out / "eval" / "items.jsonl").write_text('{"id": "x"}\n')
    push(out, "example/corpus", token=HF_SECRET)
    remote = _remote(hub, "example/corpus")
    assert remote == {k: v for k, v in tree_files(out).items() if not k.startswith(("dropped/", "eval/"))}
    assert not any(k.startswith(("dropped/", "eval/")) for k in remote)


def test_repush_replaces_stale_shards_and_skips_unchanged_files(tmp_path, hub):
    out = tmp_path / "out"
    emit(make_records(40, 20), make_spec(), out, build_info=build_info(), shard_bytes=3000)
    push(out, "example/corpus", token=HF_SECRET, private=False)
    assert hub.repo("example/corpus").private is False
    first = set(_remote(hub, "example/corpus"))

    emit(make_records(40, 20), make_spec(), out, build_info=build_info())  # one shard per config now
    push(out, "example/corpus", token=HF_SECRET, message="fewer shards")
    remote = _remote(hub, "example/corpus")
    assert remote == tree_files(out)
    last = hub.repo("example/corpus").commits[-1]
    assert last["summary"] == "fewer shards"
    assert set(last["deleted"]) == {p for p in first if p.startswith(("documents/", "demonstrations/"))} - set(remote)

    n = len(hub.repo("example/corpus").commits)
    push(out, "example/corpus", token=HF_SECRET)  # nothing changed: no new commit
    assert len(hub.repo("example/corpus").commits) == n


def test_push_to_a_branch_creates_it(tmp_path, hub):
    out = tmp_path / "out"
    emit(make_records(10, 5), make_spec(), out, build_info=build_info())
    push(out, "example/corpus", token=HF_SECRET, revision="v1")
    assert _remote(hub, "example/corpus", "v1") == tree_files(out)
    assert set(hub.files("example/corpus", "main")) == {".gitattributes"}


def test_no_secret_reaches_the_output_or_the_hub(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    out = tmp_path / "out"
    emit(make_records(20, 10), make_spec(), out, build_info=build_info())
    url = push(out, "example/corpus")  # the token comes from HF_TOKEN
    assert "/commit/" in url

    secrets = (HF_SECRET.encode(), OPENAI_SECRET.encode())
    written = {**tree_files(out), **{f"hf-home/{k}": v for k, v in tree_files(tmp_path / "hf-home").items()}}
    received = _remote(hub, "example/corpus")
    assert received
    for name, data in {**written, **{f"hub:{k}": v for k, v in received.items()}}.items():
        for secret in secrets:
            assert secret not in data, name
    for body in hub.bodies:
        for secret in secrets:
            assert secret not in body


def test_push_errors_are_actionable(tmp_path, hub, monkeypatch):
    out = tmp_path / "out"
    emit(make_records(5, 2), make_spec(), out, build_info=build_info())
    with pytest.raises(OutputError, match="401.*HF_TOKEN"):
        push(out, "example/corpus", token="hf_wrong")
    with pytest.raises(InputError, match="ORG/NAME"):
        push(out, "no-slash", token=HF_SECRET)
    with pytest.raises(InputError, match="not a specc output"):
        push(tmp_path, "example/corpus", token=HF_SECRET)
    shard = next((out / "documents").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(InputError, match="sha256 mismatch"):
        push(out, "example/corpus", token=HF_SECRET)
    assert not hub.repos  # nothing was created on any failure


def test_push_to_an_unreachable_endpoint_is_an_output_error(tmp_path, monkeypatch):
    import socket

    out = tmp_path / "out"
    emit(make_records(5, 2), make_spec(), out, build_info=build_info())
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(OutputError, match=f"127.0.0.1:{port}"):
        push(out, "example/corpus", token=HF_SECRET, endpoint=f"http://127.0.0.1:{port}")
