"""Rebuilds: an unchanged one is recognised from the output's fingerprint, an edit regenerates only what it
touched and writes what a clean build writes, and the card and manifest keep telling what the corpus cost."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import edited, spec_dict, write_spec  # noqa: E402

import specc  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.emit import read_manifest  # noqa: E402
from specc.generate.cache import Cache  # noqa: E402

runner = CliRunner()
# Prices make the provenance worth checking: a paid corpus must not read "$0.00" after a rebuild.
PRICES = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}


def spec(n: int = 4) -> dict:
    d = spec_dict(n, budget={"tokens": 2400}, documents={"genres": ["FAQ", "wiki page", "customer story"]},
                  demonstrations={"kinds": ["direct", "edge_case"], "per_kind": 1})
    d["generator"]["prices"] = PRICES
    return d


def build(path: Path, server: FakeServer, cache: Path, out: Path, *extra: str):
    res = runner.invoke(app, ["build", str(path), "--provider", "openai", "--model", "fake-model",
                              "--base-url", server.url, "--cache", str(cache), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res


def files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of an output: (mtime in ns, bytes)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def comparable(root: Path) -> dict[str, bytes]:
    """The output's files; the manifest without its timestamps (its creation time, and the identity of the
    cache entries it was built from: when each was stored) and without what this run did (its calls and
    cache hits, in total and per principle, which report.html also shows): all an incremental rebuild changes."""
    out = {name: data for name, (_, data) in files(root).items() if name not in ("manifest.json", "report.html")}
    m = json.loads((root / "manifest.json").read_text())
    del m["created_at"], m["llm"]
    m.pop("copied_from", None)
    m["fingerprint"].pop("results")
    for p in m["principles"].values():
        del p["calls"], p["cached"]
    out["manifest.json"] = json.dumps(m, sort_keys=True).encode()
    return out


def test_an_unchanged_rebuild_is_up_to_date_and_rewrites_nothing(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec())
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, cache, out)
        first = server.completions
        before = files(out)
        m = read_manifest(out)
        assert m["fingerprint"]["tasks"] == first and (out / m["fingerprint"]["task_keys"]).is_file()

        res = build(path, server, cache, out)
        assert "up to date" in res.output and "no call was made" in res.output, res.output
        assert server.completions == first
        assert files(out) == before  # same bytes, same mtimes: nothing was re-emitted

        # A new specc version is a new fingerprint: the build runs (from the cache) and writes again.
        specc.__version__ = specc.__version__ + ".post1"
        try:
            res = build(path, server, cache, out)
        finally:
            specc.__version__ = specc.__version__.removesuffix(".post1")
        assert "up to date" not in res.output and server.completions == first
        assert read_manifest(out)["fingerprint"]["inputs"] != m["fingerprint"]["inputs"]
        assert files(out)["manifest.json"][0] != before["manifest.json"][0]


def test_a_damaged_shard_is_rebuilt_not_reported_up_to_date(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec())
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, cache, out)
        first = server.completions
        good = comparable(out)
        m = read_manifest(out)
        dropped = (m.get("dropped_rows") or {}).get("shards") or []
        for shard in (m["shards"][0], *dropped[:1]):
            data = bytearray((out / shard["path"]).read_bytes())
            data[len(data) // 2] ^= 0xFF  # same size, other bytes
            (out / shard["path"]).write_bytes(bytes(data))
            res = build(path, server, cache, out)
            assert "up to date" not in res.output and server.completions == first, res.output
            assert comparable(out) == good
        (out / m["shards"][0]["path"]).write_bytes(b"")  # truncated
        res = build(path, server, cache, out)
        assert "up to date" not in res.output and comparable(out) == good
        assert "up to date" in build(path, server, cache, out).output


def test_a_version_change_changes_the_inputs_fingerprint(tmp_path, monkeypatch):
    from specc.emit.fingerprint import inputs_fingerprint
    from specc.spec.load import load_spec
    from specc.stages import Context

    s = load_spec(write_spec(tmp_path / "spec.yaml", spec()))
    ctx = Context.create(s, "openai:fake-model")
    before = inputs_fingerprint(s, ctx, "openai:fake-model")
    assert inputs_fingerprint(s, ctx, "openai:fake-model") == before
    assert inputs_fingerprint(s, ctx, "openai:other-model") != before
    monkeypatch.setattr(specc, "__version__", "99.0")
    assert inputs_fingerprint(s, ctx, "openai:fake-model") != before


def test_a_cleared_cache_or_a_missing_shard_is_not_up_to_date(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec())
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, cache, out)
        first = server.completions
        with Cache(cache) as c:
            c.clear()
        res = build(path, server, cache, out)
        # The output was made from results the cache no longer holds: the build runs and calls again.
        assert "up to date" not in res.output and server.completions == 2 * first

        shard = out / read_manifest(out)["shards"][0]["path"]
        shard.unlink()
        res = build(path, server, cache, out)
        assert "up to date" not in res.output and shard.is_file() and server.completions == 2 * first


def test_an_edit_regenerates_one_principle_and_writes_what_a_clean_build_writes(tmp_path):
    d = spec()
    path = write_spec(tmp_path / "spec.yaml", d)
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        first = build(path, server, cache, out)
        assert "regenerated:" not in first.output  # a first build regenerates everything: nothing to point at
        write_spec(path, edited(d, "p2", subrules=["Sub-rule 2, now stricter."]))
        res = build(path, server, cache, out)
        m = read_manifest(out)
        called = {pid for pid, p in m["principles"].items() if p["calls"]}
        assert called == {"p2"}, {pid: (p["calls"], p["cached"]) for pid, p in m["principles"].items()}
        assert all(p["cached"] for pid, p in m["principles"].items() if pid != "p2")
        assert f"regenerated: p2 {m['principles']['p2']['calls']} calls; 3 principles unchanged (all cached)" in res.output
        assert m["llm"]["calls"] == m["principles"]["p2"]["calls"]

        # The same spec from nothing: a fresh cache and a fresh output folder.
        build(path, server, tmp_path / "clean.sqlite", tmp_path / "clean")
    assert comparable(out) == comparable(tmp_path / "clean")


def test_a_build_into_a_new_folder_copies_an_up_to_date_output(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec())
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, cache, out)
        first = server.completions
        (out / "eval").mkdir()  # `specc eval`'s suite belongs to that output, not to a copy
        (out / "eval" / "items.jsonl").write_text("{}\n")
        (out / "documents" / "notes.txt").write_text("not a file a build writes\n")
        source = files(out)

        res = build(path, server, cache, tmp_path / "copy")
        assert f"copied {out} to {tmp_path / 'copy'}" in res.output and "no call was made" in res.output, res.output
        assert server.completions == first and files(out) == source  # the source is read, not touched
        assert not (tmp_path / "copy" / "eval").exists()
        copy = {name: data for name, (_, data) in files(tmp_path / "copy").items()}
        assert copy.keys() == {name for name in source if not name.startswith("eval/")} - {"documents/notes.txt"}
        assert all(copy[name] == source[name][1] for name in copy if name != "manifest.json")

        # No copy is made of an output whose shard changed: with both spoilt, the build runs, from the cache.
        kept = comparable(tmp_path / "copy")
        for root in (out, tmp_path / "copy"):
            shard = root / read_manifest(root)["shards"][0]["path"]
            shard.write_bytes(shard.read_bytes()[:-1] + b"x")
        res = build(path, server, cache, tmp_path / "built")
        assert "copied" not in res.output and "0 calls" in res.output, res.output
        # ...and the next build into another folder copies that complete output instead.
        res = build(path, server, cache, tmp_path / "again")
        assert f"copied {tmp_path / 'built'}" in res.output, res.output

        # The same spec from nothing: a fresh cache and a fresh output folder.
        build(path, server, tmp_path / "clean.sqlite", tmp_path / "clean")
    assert kept == comparable(tmp_path / "built") == comparable(tmp_path / "clean")
    assert comparable(tmp_path / "again") == comparable(tmp_path / "clean")


def test_provenance_survives_rebuilds(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec())
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, cache, out)
        m = read_manifest(out)
        prov = m["provenance"]
        assert prov["build"]["calls"] == m["llm"]["calls"] == server.completions
        assert prov["build"]["cost_usd"] == round(m["llm"]["cost_usd"], 6) > 0
        assert (prov["build"]["input_tokens"], prov["build"]["output_tokens"]) == (
            m["llm"]["input_tokens"], m["llm"]["output_tokens"])
        # The kept rows come from fewer generations than the whole build used (facets, dropped rows...).
        assert 0 < prov["kept"]["calls"] < prov["build"]["calls"]
        assert 0 < prov["kept"]["cost_usd"] < prov["build"]["cost_usd"]
        card = (out / "README.md").read_text()
        cost = f"${prov['build']['cost_usd']:.4f}"
        assert cost in card

        build(path, server, cache, out)  # up to date: the card and manifest are the first build's
        assert read_manifest(out)["provenance"] == prov and cost in (out / "README.md").read_text()

        # Into a new folder from a warm cache: the output is copied, with the manifest of the build that
        # wrote it (its "llm" says what that run did), and the corpus still cost what it cost.
        calls = server.completions
        build(path, server, cache, tmp_path / "copy")
        m2 = read_manifest(tmp_path / "copy")
        assert server.completions == calls and m2["copied_from"]["path"] == str(out)
        assert m2["llm"] == m["llm"] and m2["provenance"] == prov
        card = (tmp_path / "copy" / "README.md").read_text()
        assert cost in card


def test_the_card_describes_the_genres_kinds_and_columns_the_build_has(tmp_path):
    import datasets

    path = write_spec(tmp_path / "spec.yaml", spec())
    out = tmp_path / "out"
    with FakeServer(StageResponder()) as server:
        build(path, server, tmp_path / "cache.sqlite", out)
    m = read_manifest(out)
    card = (out / "README.md").read_text()
    assert "news, textbooks, forum threads" not in card
    genres = sorted(m["kinds"]["documents"].items(), key=lambda kv: (-kv[1], kv[0]))
    assert {g for g, _ in genres} <= {"FAQ", "wiki page", "customer story"} and len(genres) >= 2
    names = [g for g, _ in genres]
    prose = ", ".join(names[:-1]) + " and " + names[-1]
    assert f"Documents in {len(names)} genres (" in card and prose in card, card
    assert "chat conversations (" in card and all(k.replace("_", " ") in card for k in m["kinds"]["demonstrations"])

    # The columns are what the card says they are.
    docs = datasets.load_dataset(str(out), "documents", split="train")
    demos = datasets.load_dataset(str(out), "demonstrations", split="train")
    assert all(json.loads(i)["title"] for i in docs["idea"])
    assert set(demos["idea"]) == {None} and all("scenario" in json.loads(x) for x in demos["meta"])
    assert "`idea` (always\nempty: a demonstration is written from a scenario, which is in `meta`)" in card
    assert "`scenario` (the scenario it was written from)" in card
    assert m["columns"]["demonstrations"]["idea_rows"] == 0 and "scenario" in m["columns"]["demonstrations"]["meta_keys"]
