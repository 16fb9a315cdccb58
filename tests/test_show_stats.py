"""`specc stats` and `specc show` on a real build: tables without Python repr; rows wrapped, whole, as JSON, filtered."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder, _name, _rng, _words  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.emit import iter_rows, read_manifest  # noqa: E402
from specc.emit.dropped import iter_dropped  # noqa: E402

runner = CliRunner()
BOX = set("│╭╮╰╯─┃━╇")


class LongDocuments(StageResponder):
    """Documents of some 600 words, each ending in words of its own; every fourth verdict a fail."""

    def __init__(self):
        super().__init__()
        self.judged = 0

    def document(self, body, text):
        rng = _rng(body)
        sentences = " ".join(f"{_name(text)} {_words(rng, 11)}." for _ in range(55))
        return f"<document>\n{sentences} Closing mark {rng.randrange(10**8):08d} ends it.\n</document>"

    def judge(self, body, text):
        self.judged += 1
        verdict = "fail" if self.judged % 4 == 0 else "pass"
        return json.dumps({"verdict": verdict, "reason": f"the reply {verdict}s the rule"})


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("show")
    d = spec_dict(2, budget={"tokens": 9000}, documents={"max_tokens": 1200})
    path = write_spec(tmp / "spec.yaml", d)
    with FakeServer(LongDocuments()) as server:
        r = run_build(path, out=tmp / "out", provider="openai", model="fake-model", base_url=server.url,
                      cache_path=tmp / "cache.sqlite", quiet=True, allow_short=True)
    return r.out_dir


def specc(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """The installed CLI in a subprocess, as a terminal of ``columns`` would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECC_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "specc", *args], capture_output=True, text=True, env=env, timeout=120)


def panel_text(output: str) -> str:
    """The words inside the panels, joined across the lines they were wrapped onto."""
    inner = [line.strip().strip("│").strip() for line in output.splitlines() if line.startswith("│")]
    return " ".join(w for line in inner for w in line.split())


@pytest.mark.parametrize("columns", [80, 200])
def test_show_wraps_a_long_document_to_the_terminal_and_shows_its_last_words(out, columns):
    doc = next(iter_rows(out, "documents"))
    assert len(doc["text"]) > 3 * columns * 4  # many lines long at either width
    res = specc("show", str(out), "-n", "1", columns=columns)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert len(lines) > len(doc["text"]) // columns  # wrapped, not cropped to one line per paragraph
    last_words = " ".join(doc["text"].split()[-5:])
    assert re.match(r"Closing mark \d{8} ends it\.", last_words)
    assert last_words in panel_text(res.stdout)
    assert " ".join(doc["text"].split()) in panel_text(res.stdout)  # every word, in order
    # the title's details (principle, genre, tokens) are shown whole too
    assert doc["id"] in res.stdout and f"{doc['principle_id']}  {doc['genre']}" in res.stdout
    assert f"{doc['tokens']} tokens" in res.stdout


def test_show_max_chars_still_cuts_a_panel_on_request(out):
    res = runner.invoke(app, ["show", str(out), "-n", "1", "--max-chars", "40"])
    assert res.exit_code == 0, res.output
    assert "[...]" in res.stdout and "Closing mark" not in res.stdout
    res = runner.invoke(app, ["show", str(out), "-n", "1", "--max-chars", "0"])  # as before: 0 never cuts
    assert res.exit_code == 0 and "[...]" not in res.stdout and "Closing mark" in res.stdout


def test_show_full_prints_rows_untouched_as_plain_text(out):
    docs = list(iter_rows(out, "documents"))[:2]
    res = specc("show", str(out), "-n", "2", "--full", columns=40)
    assert res.returncode == 0, res.stderr
    assert not BOX & set(res.stdout) and "\x1b[" not in res.stdout
    for doc in docs:
        assert f"\n{doc['text']}\n" in res.stdout  # the stored text, on lines of its own length
        assert f"==> {doc['id']}  {doc['principle_id']}  {doc['genre']}" in res.stdout
    demo = next(iter_rows(out, "demonstrations"))
    res = runner.invoke(app, ["show", str(out), "-c", "demonstrations", "-n", "1", "--full"])
    assert res.exit_code == 0, res.output
    for msg in demo["messages"]:
        assert f"{msg['role']}: {msg['content']}" in res.stdout


def test_show_json_prints_one_stored_row_per_line(out):
    res = runner.invoke(app, ["show", str(out), "--json", "-c", "demonstrations", "-n", "0"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    stored = list(iter_rows(out, "demonstrations"))
    assert rows == stored and len(rows) == read_manifest(out)["counts"]["demonstrations"]
    assert all(isinstance(r["messages"], list) and r["messages"][0]["role"] for r in rows)

    res = runner.invoke(app, ["show", str(out), "--json", "-n", "2"])
    assert [json.loads(line) for line in res.stdout.splitlines()] == list(iter_rows(out, "documents"))[:2]
    # dropped rows as stored: with their reason
    res = runner.invoke(app, ["show", str(out), "--json", "--dropped", "--reason", "judge:fail", "-n", "0"])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and all(r["reason"] == "judge:fail" and r["judge_verdict"] == "fail" for r in rows)
    assert len(rows) == read_manifest(out)["dropped"]["judge:fail"]


def _ids(output: str) -> list[str]:
    return [json.loads(line)["id"] for line in output.splitlines()]


def test_show_filters_by_principle_genre_and_kind_and_combines_them(out):
    demos = list(iter_rows(out, "demonstrations"))
    docs = list(iter_rows(out, "documents"))
    kinds, genres = Counter(r["kind"] for r in demos), Counter(r["genre"] for r in docs)
    assert len(kinds) > 1 and len(genres) > 1
    for kind in kinds:  # --kind alone picks demonstrations
        res = runner.invoke(app, ["show", str(out), "--kind", kind, "-n", "0", "--json"])
        assert res.exit_code == 0, res.output
        assert _ids(res.stdout) == [r["id"] for r in demos if r["kind"] == kind]
    genre = "news report"
    res = runner.invoke(app, ["show", str(out), "--genre", genre, "-p", "p1", "-n", "0", "--json"])
    want = [r["id"] for r in docs if r["genre"] == genre and r["principle_id"] == "p1"]
    assert want and _ids(res.stdout) == want
    res = runner.invoke(app, ["show", str(out), "--genre", genre, "-p", "p1", "-n", "1"])  # and the sample count
    assert res.exit_code == 0 and res.stdout.count("╭─") == 1 and want[0] in res.stdout

    dropped = [r for r in iter_dropped(out, read_manifest(out), "demonstrations") if r["reason"] == "judge:fail"]
    kind = dropped[0]["kind"]
    res = runner.invoke(app, ["show", str(out), "--dropped", "--reason", "judge", "--kind", kind, "-p",
                              dropped[0]["principle_id"], "-n", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert _ids(res.stdout) == [r["id"] for r in dropped if r["kind"] == kind
                                and r["principle_id"] == dropped[0]["principle_id"]]


def test_show_refuses_values_the_output_has_no_rows_of_and_lists_those_it_has(out):
    m = read_manifest(out)
    bad = runner.invoke(app, ["show", str(out), "-p", "nope"])
    assert bad.exit_code == 2 and "unknown principle 'nope'" in bad.stderr and "p0, p1" in bad.stderr
    bad = runner.invoke(app, ["show", str(out), "--genre", "faq"])
    assert bad.exit_code == 2 and "unknown genre 'faq'" in bad.stderr
    assert f"FAQ ({m['kinds']['documents']['FAQ']})" in bad.stderr and "news report (" in bad.stderr
    bad = runner.invoke(app, ["show", str(out), "--kind", "sideways"])
    assert bad.exit_code == 2 and "unknown kind 'sideways'" in bad.stderr and "direct (" in bad.stderr
    bad = runner.invoke(app, ["show", str(out), "--dropped", "--reason", "nothing:like_this"])
    assert bad.exit_code == 2 and "judge:fail (" in bad.stderr
    for args, message in (
        (["--genre", "FAQ", "--kind", "direct"], "use one"),
        (["--kind", "direct", "-c", "documents"], "--kind filters demonstrations"),
        (["--genre", "FAQ", "-c", "demonstrations"], "--genre filters documents"),
        (["--full", "--json"], "use one"),
        (["--json", "--max-chars", "10"], "print rows whole"),
        (["--reason", "judge"], "--reason needs --dropped"),
        (["-c", "nope"], "unknown config"),
    ):
        bad = runner.invoke(app, ["show", str(out), *args])
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.output)


def test_show_says_on_stderr_when_known_filters_match_no_row(out):
    # each value is among the dropped replies, but no dropped reply has all three: an empty answer, not an error
    dropped = list(iter_dropped(out, read_manifest(out), "demonstrations"))
    have = {(r["reason"].split(":")[0], r["principle_id"], r["kind"]) for r in dropped}
    reasons, pids, kinds = ({t[i] for t in have} for i in range(3))
    reason, pid, kind = next((r, p, k) for r in sorted(reasons) for p in sorted(pids) for k in sorted(kinds)
                             if (r, p, k) not in have)
    res = runner.invoke(app, ["show", str(out), "--dropped", "-r", reason, "-p", pid, "--kind", kind, "--json"])
    assert res.exit_code == 0 and res.stdout == ""
    assert f"no dropped demonstrations in {out} match principle {pid}, kind {kind}, reason {reason}" in res.stderr
    res = runner.invoke(app, ["show", str(out), "--dropped", "-r", reason, "-p", pid, "--kind", kind])
    assert res.exit_code == 0 and res.stdout == "" and "no dropped demonstrations" in res.stderr


def test_stats_prints_every_section_as_a_table_without_python_repr(out):
    res = specc("stats", str(out), columns=80)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "{'" not in text and "': " not in text and "[" not in text
    assert "LLM per stage" in text
    per_stage = read_manifest(out)["llm"]["per_stage"]
    for stage, numbers in per_stage.items():
        row = next(line for line in text.splitlines() if line.split("│")[0].strip() == stage)
        assert f"{numbers['calls']:,}" in row and f"{numbers['input_tokens']:,}" in row
    assert max(len(line) for line in text.splitlines()[1:]) <= 80  # the first line is the build's summary
