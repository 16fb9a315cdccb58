"""The emit pass: layout, schemas, loading with `datasets`, determinism, sharding, atomic replacement."""

from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml
from emit_fixtures import PRINCIPLES, build_info, make_records, make_spec, tree_files

from specc.emit import MANIFEST_SCHEMA_VERSION, emit, iter_rows, read_manifest
from specc.emit.shards import ROW_GROUP_ROWS, SCHEMAS
from specc.errors import InputError, ManifestVersionError, OutputError


def _front_matter(out) -> dict:
    text = (out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    """`datasets` with its caches in tmp_path and the Hub unreachable by configuration."""
    for var, sub in (("HF_HOME", "hf"), ("HF_DATASETS_CACHE", "hf/datasets"), ("HF_HUB_CACHE", "hf/hub")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    return datasets


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.gz"])
def test_load_dataset_reads_both_configs_as_the_manifest_says(tmp_path, offline_datasets, fmt):
    out = tmp_path / "out"
    records = make_records(60, 30)
    manifest = emit(records, make_spec(), out, build_info=build_info(), fmt=fmt, shard_bytes=4000)

    assert manifest["counts"] == {"documents": 60, "demonstrations": 30}
    assert len([s for s in manifest["shards"] if s["config"] == "documents"]) > 1
    names = {c["config_name"] for c in _front_matter(out)["configs"]}
    assert names == {"documents", "demonstrations"}
    for config in ("documents", "demonstrations"):
        ds = offline_datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / "dscache"))
        assert ds.column_names == SCHEMAS[config].names
        assert len(ds) == manifest["counts"][config]
        assert sum(ds["tokens"]) == manifest["tokens"][config]
        by_p = Counter(ds["principle_id"])
        assert {p: by_p[p] for p in PRINCIPLES} == {p: manifest["principles"][p][config] for p in PRINCIPLES}
    demos = offline_datasets.load_dataset(str(out), "demonstrations", split="train", cache_dir=str(tmp_path / "dscache"))
    row = demos[0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["judge_verdict"] == "pass" and row["judge_reason"].startswith("follows ")
    assert row["idea"].startswith('"scenario ')  # JSON text
    docs = offline_datasets.load_dataset(str(out), "documents", split="train", cache_dir=str(tmp_path / "dscache"))
    assert json.loads(docs[0]["idea"])["audience"] == "students"
    assert json.loads(docs[0]["meta"]) == {"round": 1}
    assert docs.features["tokens"].dtype == "int64" and docs.features["idea"].dtype == "string"


def test_manifest_card_and_columns(tmp_path):
    out = tmp_path / "out"
    spec = make_spec()
    records = make_records(30, 12)
    m = emit(records, spec, out, build_info=build_info(), shard_bytes=3000)

    assert read_manifest(out) == m
    assert m["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert m["spec"] == {
        "name": "demo-spec", "version": "1.2.0", "sha256": spec.sha256,
        "assistant": "Aria", "license": "cc-by-4.0", "language": "en",
    }
    docs = [r for r in records if r.kind == "document"]
    demos = [r for r in records if r.kind == "demonstration"]
    assert m["tokens"]["documents"] == sum(r.tokens for r in docs)
    assert m["tokens"]["total"] == sum(r.tokens for r in records)
    assert m["tokens"]["budget"] == 50_000
    assert m["principles"]["care"]["documents"] == sum(r.principle_id == "care" for r in docs)
    assert m["principles"]["care"]["quota"] == 10_000
    assert m["principles"]["care"]["dropped"] == {"filters:too_short": 4}
    assert m["dropped"] == {"dedup:near_duplicate": 3, "filters:too_short": 4}
    assert m["llm"]["calls"] == 120 and m["llm"]["cost_usd"] == 0.125
    assert m["kinds"]["demonstrations"] == dict(Counter(r.demo_kind for r in demos))
    assert m["hub"] == {"repo": "example/demo-spec", "private": True}
    for s in m["shards"]:
        path = out / s["path"]
        assert path.stat().st_size == s["bytes"]
        pf = pq.ParquetFile(path)
        assert pf.metadata.num_rows == s["rows"]
        assert pf.schema_arrow.names == SCHEMAS[s["config"]].names
        assert all(pf.metadata.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(pf.num_row_groups))
    assert [s["path"] for s in m["shards"] if s["config"] == "documents"][0].startswith("documents/train-00000-of-0000")
    assert sorted(r["id"] for r in iter_rows(out, "documents")) == sorted(r.id for r in docs)

    card = (out / "README.md").read_text(encoding="utf-8")
    fm = _front_matter(out)
    assert fm["license"] == "cc-by-4.0" and fm["size_categories"] == ["n<1K"]
    assert {"synthetic", "midtraining", "model-spec"} <= set(fm["tags"])
    for needle in ("Aria", "1.2.0", spec.sha256, "gpt-test", "filters:too_short", "SFTTrainer",
                   "load_dataset(\"example/demo-spec\", \"documents\"", "Title of care \\| with a pipe", "midtraining"):
        assert needle in card, needle


def test_emit_is_deterministic_and_ignores_input_order(tmp_path):
    records = make_records(50, 25)
    a = emit(records, make_spec(), tmp_path / "a", build_info=build_info(), shard_bytes=3000)
    b = emit(list(reversed(records)), make_spec(), tmp_path / "b", build_info=build_info(), shard_bytes=3000)
    fa, fb = tree_files(tmp_path / "a"), tree_files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    for name in fa:
        if name != "manifest.json":
            assert fa[name] == fb[name], name
    assert {k: v for k, v in a.items() if k != "created_at"} == {k: v for k, v in b.items() if k != "created_at"}
    ma, mb = json.loads(fa["manifest.json"]), json.loads(fb["manifest.json"])
    assert a["created_at"] and ma.pop("created_at") and mb.pop("created_at")
    assert ma == mb
    # Re-emitting into the same directory gives the same bytes too.
    emit(records, make_spec(), tmp_path / "a", build_info=build_info(), shard_bytes=3000)
    again = tree_files(tmp_path / "a")
    assert {k: v for k, v in again.items() if k != "manifest.json"} == {k: v for k, v in fa.items() if k != "manifest.json"}


def test_rows_are_shuffled_by_the_spec_seed_so_every_shard_mixes_principles(tmp_path):
    records = make_records(90, 0)  # input sorted by principle
    m = emit(records, make_spec(), tmp_path / "a", build_info=build_info(), shard_bytes=6000)
    shards = [s for s in m["shards"] if s["config"] == "documents"]
    assert len(shards) >= 3
    for s in shards:
        pids = pq.read_table(tmp_path / "a" / s["path"], columns=["principle_id"]).column(0).to_pylist()
        assert len(set(pids)) >= 2, s["path"]
    other = make_spec().model_copy(update={"corpus": make_spec().corpus.model_copy(update={"seed": 8})})
    emit(records, other, tmp_path / "b", build_info=build_info(), shard_bytes=6000)
    ids_a = [r["id"] for r in iter_rows(tmp_path / "a", "documents")]
    ids_b = [r["id"] for r in iter_rows(tmp_path / "b", "documents")]
    assert sorted(ids_a) == sorted(ids_b) and ids_a != ids_b


def test_shard_size_follows_the_spec_and_the_override(tmp_path):
    records = make_records(40, 0)
    one = emit(records, make_spec(), tmp_path / "one", build_info=build_info())  # default ~500 MB
    docs = [s for s in one["shards"] if s["config"] == "documents"]
    assert [s["path"] for s in docs] == [f"documents/train-00000-of-00001-{docs[0]['sha256'][:12]}.parquet"]
    small = emit(records, make_spec(shard_bytes=2000), tmp_path / "small", build_info=build_info())
    docs = [s for s in small["shards"] if s["config"] == "documents"]
    n = len(docs)
    assert n > 5
    assert [s["path"] for s in docs] == [
        f"documents/train-{i:05d}-of-{n:05d}-{s['sha256'][:12]}.parquet" for i, s in enumerate(docs)]
    assert sum(s["rows"] for s in docs) == 40


def test_a_kind_with_no_rows_is_an_empty_config(tmp_path, offline_datasets):
    out = tmp_path / "out"
    m = emit(make_records(12, 0), make_spec(), out, build_info=build_info())
    assert m["configs"] == ["documents", "demonstrations"] and m["counts"]["demonstrations"] == 0
    empty = [s for s in m["shards"] if s["config"] == "demonstrations"]
    assert len(empty) == 1 and empty[0]["rows"] == 0
    assert pq.ParquetFile(out / empty[0]["path"]).schema_arrow.names == SCHEMAS["demonstrations"].names
    assert [c["config_name"] for c in _front_matter(out)["configs"]] == ["documents", "demonstrations"]
    assert list(iter_rows(out, "demonstrations")) == []
    assert "the `demonstrations` config is empty" in (out / "README.md").read_text()
    ds = offline_datasets.load_dataset(str(out), "documents", split="train", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 12
    # The config exists with its columns; `datasets` streams it as empty (and refuses an empty split otherwise).
    stream = offline_datasets.load_dataset(str(out), "demonstrations", split="train", streaming=True)
    assert list(stream) == [] and list(stream.features) == SCHEMAS["demonstrations"].names

    # A build whose curation dropped everything still gets a manifest and a card that say so.
    m = emit([], make_spec(), tmp_path / "none", build_info=build_info())
    assert m["counts"] == {"documents": 0, "demonstrations": 0} and [s["rows"] for s in m["shards"]] == [0, 0]
    assert "filters:too_short" in (tmp_path / "none" / "README.md").read_text()


def test_a_rebuild_is_never_served_from_the_datasets_cache(tmp_path, offline_datasets):
    """`datasets` caches a local dataset under a key made from its file names: every build's names differ."""
    out = tmp_path / "out"
    first = emit(make_records(20, 10), make_spec(), out, build_info=build_info())
    loaded = offline_datasets.load_dataset(str(out), "documents", split="train")
    assert sorted(loaded["id"]) == sorted(r["id"] for r in iter_rows(out, "documents"))
    second = emit(make_records(30, 12)[5:], make_spec(), out, build_info=build_info())
    assert first["counts"] != second["counts"]
    for config in ("documents", "demonstrations"):
        again = offline_datasets.load_dataset(str(out), config, split="train")  # the same HF cache
        assert sorted(again["id"]) == sorted(r["id"] for r in iter_rows(out, config))
        assert len(again) == second["counts"][config]
    card = _front_matter(out)["configs"]
    assert {c["config_name"]: c["data_files"][0]["path"] for c in card} == {
        c: [s["path"] for s in second["shards"] if s["config"] == c] for c in ("documents", "demonstrations")}


def test_extra_writers_run_inside_the_new_build_before_it_is_swapped_in(tmp_path):
    out = tmp_path / "out"
    emit(make_records(6, 3), make_spec(), out, build_info=build_info())
    seen = []

    def writer(d):
        seen.append(d)
        assert d != out and d.parent == out.parent and d.name.startswith(".out.tmp-")
        assert read_manifest(d)["counts"]["documents"] == 9
        (d / "report.html").write_text("<html>report</html>")

    emit(make_records(9, 3), make_spec(), out, build_info=build_info(), extra_writers=[writer])
    assert seen and (out / "report.html").read_text() == "<html>report</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failing_build_leaves_the_previous_output_intact(tmp_path):
    out = tmp_path / "out"
    emit(make_records(6, 3), make_spec(), out, build_info=build_info())
    before = tree_files(out)

    def boom(d):
        raise RuntimeError("report failed")

    with pytest.raises(RuntimeError):
        emit(make_records(20, 3), make_spec(), out, build_info=build_info(), extra_writers=[boom])
    assert tree_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_a_directory_that_is_not_a_specc_output(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not a specc output"):
        emit(make_records(3, 1), make_spec(), out, build_info=build_info())
    assert (out / "thesis.tex").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        emit(make_records(3, 1), make_spec(), tmp_path / "afile", build_info=build_info())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert emit(make_records(3, 1), make_spec(), empty, build_info=build_info())["counts"]["documents"] == 3


def test_disk_errors_become_output_errors_naming_the_path(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(OutputError, match="blocker"):
        emit(make_records(3, 1), make_spec(), blocker / "sub" / "out", build_info=build_info())


def test_an_interrupted_swap_is_recovered_on_the_next_emit(tmp_path):
    out = tmp_path / "out"
    first = emit(make_records(6, 3), make_spec(), out, build_info=build_info())
    # The state a kill between the two renames leaves: the old build as a backup, no OUT, a stale temp dir.
    os.rename(out, tmp_path / ".out.old-deadbeef")
    (tmp_path / ".out.tmp-cafebabe").mkdir()
    with pytest.raises(InputError):
        read_manifest(out)
    m = emit(make_records(8, 3), make_spec(), out, build_info=build_info())
    assert m["counts"]["documents"] == 8 and first["counts"]["documents"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_rebuild_keeps_the_eval_folder(tmp_path):
    out = tmp_path / "out"
    emit(make_records(6, 3), make_spec(), out, build_info=build_info())
    (out / "eval").mkdir()
    (out / "eval" / "results-base.json").write_text("{}")
    emit(make_records(8, 3), make_spec(), out, build_info=build_info())
    assert (out / "eval" / "results-base.json").read_text() == "{}"
    # killed after the swap, before the eval folder moved over: the next emit moves it
    emit(make_records(5, 3), make_spec(), tmp_path / "newer", build_info=build_info())
    os.rename(out, tmp_path / ".out.old-deadbeef")
    os.rename(tmp_path / "newer", out)
    emit(make_records(7, 3), make_spec(), out, build_info=build_info())
    assert (out / "eval" / "results-base.json").is_file() and read_manifest(out)["counts"]["documents"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_read_manifest_refuses_missing_and_incompatible_manifests(tmp_path):
    with pytest.raises(InputError, match="not a specc output"):
        read_manifest(tmp_path)
    out = tmp_path / "out"
    emit(make_records(3, 1), make_spec(), out, build_info=build_info())
    data = json.loads((out / "manifest.json").read_text())
    data["schema_version"] = MANIFEST_SCHEMA_VERSION + 1
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestVersionError, match="rebuild"):
        read_manifest(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        read_manifest(out)
    with pytest.raises(InputError, match="unknown config"):
        list(iter_rows(out, "other"))
