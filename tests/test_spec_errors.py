"""The malformed-spec corpus: every case exits 2 with FILE:LINE and the field path, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app
from specc.spec.load import load_spec

GOOD = """\
specc: 1
name: demo
assistant: {name: Aria, developer: Acme}
principles:
  - id: honesty
    title: Be honest
    statement: Aria does not lie.
"""

# "billion laughs": nine levels of nine aliases each, about 10^9 strings once expanded.
BOMB = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + [
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")
]

# (case id, {file: content}, expected "FILE:LINE" prefix, expected path, expected message fragment)
CASES = [
    ("yaml-syntax", {"s.yaml": "specc: 1\nname: [demo\nassistant: x\n"}, "s.yaml:3", "", "YAML syntax error"),
    ("tab-indent", {"s.yaml": "specc: 1\nname: demo\nassistant:\n\tname: Aria\n"}, "s.yaml:4", "", "tab"),
    ("duplicate-key", {"s.yaml": GOOD + "name: other\n"}, "s.yaml:8", "", "duplicate key"),
    ("wrong-type-version", {"s.yaml": GOOD.replace("specc: 1", "specc: two")}, "s.yaml:1:8", "specc", "specc: 1"),
    ("unsupported-version", {"s.yaml": GOOD.replace("specc: 1", "specc: 2")}, "s.yaml:1:8", "specc", "unsupported"),
    ("missing-name", {"s.yaml": GOOD.replace("name: demo\n", "")}, "s.yaml:1", "name", "required field is missing"),
    ("missing-assistant", {"s.yaml": GOOD.replace("assistant: {name: Aria, developer: Acme}\n", "")}, "s.yaml:1", "assistant", "missing"),
    ("bad-slug-name", {"s.yaml": GOOD.replace("name: demo", "name: My Demo")}, "s.yaml:2:7", "name", "slug"),
    ("unknown-top-key", {"s.yaml": GOOD + "principals: []\n"}, "s.yaml:8:1", "principals", "did you mean `principles`"),
    ("unknown-nested-key", {"s.yaml": GOOD + "    wieght: 2\n"}, "s.yaml:8:5", "principles[0].wieght", "did you mean `weight`"),
    ("typo-in-assistant", {"s.yaml": GOOD.replace("developer:", "developr:")}, "s.yaml:3", "assistant.developr", "did you mean `developer`"),
    ("weight-zero", {"s.yaml": GOOD + "    weight: 0\n"}, "s.yaml:8:13", "principles[0].weight", "greater than 0"),
    ("weight-negative", {"s.yaml": GOOD + "    weight: -2.5\n"}, "s.yaml:8:13", "principles[0].weight", "greater than 0"),
    ("weight-string", {"s.yaml": GOOD + "    weight: heavy\n"}, "s.yaml:8:13", "principles[0].weight", "number"),
    ("priority-negative", {"s.yaml": GOOD + "    priority: -1\n"}, "s.yaml:8:15", "principles[0].priority", "greater than or equal to 0"),
    ("missing-statement", {"s.yaml": GOOD.replace("    statement: Aria does not lie.\n", "")}, "s.yaml:5", "principles[0].statement", "missing"),
    ("bad-principle-id", {"s.yaml": GOOD.replace("id: honesty", "id: Be Honest!")}, "s.yaml:5:9", "principles[0].id", "slug"),
    ("empty-principles", {"s.yaml": GOOD.split("principles:")[0] + "principles: []\n"}, "s.yaml:4:13", "principles", "at least one principle"),
    ("principles-not-list", {"s.yaml": GOOD.split("principles:")[0] + "principles: honesty\n"}, "s.yaml:4:13", "principles", "list"),
    (
        "duplicate-id",
        {"s.yaml": GOOD + "  - id: honesty\n    title: Again\n    statement: Twice.\n"},
        "s.yaml:8:9",
        "principles[1].id",
        "duplicate principle id 'honesty' (first defined at s.yaml:5)",
    ),
    ("mix-not-one", {"s.yaml": GOOD + "corpus:\n  mix: {documents: 0.6, demonstrations: 0.3}\n"}, "s.yaml:9:8", "corpus.mix", "sum to 1"),
    ("mix-out-of-range", {"s.yaml": GOOD + "corpus:\n  mix: {documents: 1.5, demonstrations: -0.5}\n"}, "s.yaml:9", "corpus.mix.documents", "less than or equal to 1"),
    ("budget-zero", {"s.yaml": GOOD + "corpus:\n  budget: {tokens: 0}\n"}, "s.yaml:9:20", "corpus.budget.tokens", "greater than 0"),
    ("bad-demo-kind", {"s.yaml": GOOD + "corpus:\n  demonstrations: {kinds: [direct, sneaky]}\n"}, "s.yaml:9", "corpus.demonstrations.kinds[1]", "direct"),
    ("dedup-threshold", {"s.yaml": GOOD + "corpus:\n  dedup: {threshold: 1.5}\n"}, "s.yaml:9", "corpus.dedup.threshold", "less than or equal to 1"),
    ("bad-provider", {"s.yaml": GOOD + "generator:\n  provider: anthropic-direct\n"}, "s.yaml:9:13", "generator.provider", "'local' or 'openai'"),
    ("key-in-api-key-env", {"s.yaml": GOOD + "generator:\n  api_key_env: sk-proj-abc123def456ghi789\n"}, "s.yaml:9:16", "generator.api_key_env", "NAME of an environment variable"),
    ("literal-api-key-field", {"s.yaml": GOOD + "generator:\n  api_key: sk-proj-abc123\n"}, "s.yaml:9:3", "generator.api_key", "never accepted"),
    ("example-without-reply", {"s.yaml": GOOD + "    examples:\n      - user: hi\n"}, "s.yaml:9:9", "principles[0].examples[0]", "`good` or a `bad`"),
    (
        "example-user-and-turns",
        {"s.yaml": GOOD + "    examples:\n      - user: hi\n        turns: [{role: user, content: hi}]\n        good: hello\n"},
        "s.yaml:9:9",
        "principles[0].examples[0]",
        "either `user` (one turn) or `turns`",
    ),
    (
        "example-turns-end-with-assistant",
        {"s.yaml": GOOD + "    examples:\n      - turns: [{role: user, content: hi}, {role: assistant, content: yo}]\n"
                          "        good: hello\n"},
        "s.yaml:9:9",
        "principles[0].examples[0]",
        "must end with a `user` or `tool` message",
    ),
    (
        "example-turn-bad-role",
        {"s.yaml": GOOD + "    examples:\n      - turns: [{role: developer, content: hi}]\n        good: hello\n"},
        "s.yaml:9:24",
        "principles[0].examples[0].turns[0].role",
        "'user', 'assistant' or 'tool'",
    ),
    ("bad-output-format", {"s.yaml": GOOD + "output: {format: csv}\n"}, "s.yaml:8:18", "output.format", "parquet"),
    ("bad-hub-repo", {"s.yaml": GOOD + "output: {hub: {repo: not a repo}}\n"}, "s.yaml:8:22", "output.hub.repo", "pattern"),
    ("top-level-list", {"s.yaml": "- specc: 1\n- name: demo\n"}, "s.yaml:1:1", "", "top level must be a mapping"),
    ("top-level-scalar", {"s.yaml": "just a sentence\n"}, "s.yaml:1:1", "", "top level must be a mapping"),
    ("empty-file", {"s.yaml": ""}, "s.yaml:1:1", "", "file is empty"),
    ("comments-only", {"s.yaml": "# nothing here\n# at all\n"}, "s.yaml:1:1", "", "file is empty"),
    ("binary-file", {"s.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, "s.yaml:1", "", "binary"),
    ("not-utf8", {"s.yaml": b"specc: 1\nname: caf\xe9\n"}, "s.yaml:2", "", "UTF-8"),
    ("missing-include", {"s.yaml": GOOD + "include: [nope.yaml]\n"}, "s.yaml:8:11", "include[0]", "not found"),
    (
        "include-loop",
        {"s.yaml": GOOD + "include: [a.yaml]\n", "a.yaml": "include: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n"},
        "b.yaml:1:11",
        "include[0]",
        "include loop: a.yaml -> b.yaml -> a.yaml",
    ),
    (
        "duplicate-id-across-include",
        {"s.yaml": GOOD + "include: [shared.yaml]\n", "shared.yaml": "principles:\n  - id: honesty\n    title: T\n    statement: S\n"},
        "shared.yaml:2:9",
        "principles[0].id",
        "first defined at s.yaml:5",
    ),
    (
        "error-inside-include",
        {"s.yaml": GOOD + "include: [shared.yaml]\n", "shared.yaml": "principles:\n  - id: care\n    title: T\n    statement: S\n    weight: -1\n"},
        "shared.yaml:5:13",
        "principles[0].weight",
        "greater than 0",
    ),
    ("include-not-list", {"s.yaml": GOOD + "include: shared.yaml\n"}, "s.yaml:8:10", "include", "list"),
    ("bad-language", {"s.yaml": GOOD + "language: English\n"}, "s.yaml:8:11", "language", "pattern"),
    (
        "missing-include-says-where-it-looked",
        {"s.yaml": GOOD + "include: [shared/nope.yaml]\n"},
        "s.yaml:8:11",
        "include[0]",
        "not found (looked for /",
    ),
    (
        "include-not-a-fragment",
        {"s.yaml": GOOD + "include:\n  - list.yaml\n", "list.yaml": "- a\n- b\n"},
        "list.yaml:1:1",
        "",
        "top level must be a mapping of keys, found a list (included from s.yaml:9)",
    ),
    (
        "include-a-whole-spec",
        {"s.yaml": GOOD + "include: [other.yaml]\n", "other.yaml": GOOD.replace("honesty", "care")},
        "other.yaml:2:1",
        "name",
        "unknown key; expected one of: specc, include, principles (included from s.yaml:8)",
    ),
    (
        "syntax-error-in-include",
        {"s.yaml": GOOD + "include: [a.yaml]\n", "a.yaml": "principles: [\n"},
        "a.yaml:2",
        "",
        "(included from s.yaml:8)",
    ),
    # Hostile input: each is rejected by a limit in the loader, quickly (see test_hostile_input_is_quick).
    ("alias-bomb", {"s.yaml": GOOD + "lol:\n" + "".join(f"  {line}\n" for line in BOMB)}, "s.yaml:13:10", "", "aliases expand to more than"),
    ("deep-brackets", {"s.yaml": GOOD + "x: " + "[" * 3000 + "]" * 3000 + "\n"}, "s.yaml:8", "", "nested more than 64 levels deep"),
    ("deep-block", {"s.yaml": GOOD + "x:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(100))}, "s.yaml:71:64", "", "nested more than"),
    ("alias-chain-too-deep", {"s.yaml": GOOD + "a0: &a0 " + "[" * 60 + "1" + "]" * 60 + "\na1: &a1 [[[[*a0]]]]\n"},
     "s.yaml:9:13", "", "nested more than 64 levels deep once alias *a0 is expanded"),
    ("recursive-alias", {"s.yaml": GOOD + "x: &a [1, *a]\n"}, "s.yaml:8:11", "", "alias *a refers to a node that contains it"),
    ("undefined-alias", {"s.yaml": GOOD + "x: *nope\n"}, "s.yaml:8:4", "", "undefined alias"),
    ("too-big", {"s.yaml": GOOD + ("# padding\n" * 450_000)}, "s.yaml:1:1", "", "a spec may be at most 4 MB"),
    # What build would reject after loading, checked by validate before any LLM call.
    (
        "decontam-file-missing",
        {"s.yaml": GOOD + "corpus:\n  decontamination: {files: [evals/gone.jsonl]}\n"},
        "s.yaml:9:29",
        "corpus.decontamination.files[0]",
        "eval file 'evals/gone.jsonl' not found (looked for /",
    ),
    (
        "decontam-file-bad-json",
        {"s.yaml": GOOD + "corpus:\n  decontamination: {files: [e.jsonl]}\n", "e.jsonl": '{"text": "fine"}\nnot json\n'},
        "s.yaml:9:29",
        "corpus.decontamination.files[0]",
        "e.jsonl:2: not valid JSON",
    ),
    (
        "decontam-file-no-text-field",
        {"s.yaml": GOOD + "corpus:\n  decontamination: {files: [e.jsonl]}\n", "e.jsonl": '{"question": "q"}\n'},
        "s.yaml:9:29",
        "corpus.decontamination.files[0]",
        "no `text`, `prompt` or `messages` field",
    ),
    (
        "unknown-tokenizer",
        {"s.yaml": GOOD + "corpus:\n  budget: {tokenizer: cl999k_base}\n"},
        "s.yaml:9:23",
        "corpus.budget.tokenizer",
        "unknown tokenizer 'cl999k_base'",
    ),
    (
        "tokenizer-file-missing",
        {"s.yaml": GOOD + "corpus:\n  budget: {tokenizer: tok/tokenizer.json}\n"},
        "s.yaml:9:23",
        "corpus.budget.tokenizer",
        "tokenizer file not found",
    ),
    (
        "template-missing",
        {"s.yaml": GOOD + "templates: {reply: prompts/reply.j2}\n"},
        "s.yaml:8:20",
        "templates.reply",
        "cannot read",
    ),
    (
        "template-unknown-variable",
        {"s.yaml": GOOD + "templates: {document: doc.j2}\n", "doc.j2": "{% block user %}About {{ principle.nope }}{% endblock %}\n"},
        "s.yaml:8:23",
        "templates.document",
        "doc.j2: the document template uses an unknown variable",
    ),
    (
        "template-syntax-error",
        {"s.yaml": GOOD + "templates: {ideas: i.j2}\n", "i.j2": "{% block user %}{{ oops {% endblock %}\n"},
        "s.yaml:8:20",
        "templates.ideas",
        "i.j2:1: ideas template",
    ),
]


def _write(tmp_path: Path, files: dict) -> Path:
    for name, content in files.items():
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return tmp_path / "s.yaml"


@pytest.mark.parametrize("case,files,where,path,fragment", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec(tmp_path, monkeypatch, case, files, where, path, fragment):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, files)
    result = CliRunner().invoke(app, ["validate", "s.yaml"])
    out = result.stderr
    assert result.exit_code == 2, (result.exit_code, out, result.stdout)
    assert "Traceback" not in out + result.stdout
    lines = out.strip().splitlines()
    match = [ln for ln in lines if ln.startswith(where + ":") and fragment in ln]
    assert match, f"expected a line starting {where!r} containing {fragment!r}, got:\n{out}"
    if path:
        assert any(f": {path}: " in ln for ln in match), f"expected field path {path!r} in:\n{out}"


def test_corpus_is_big_enough():
    assert len(CASES) >= 25


def test_all_errors_of_a_file_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent(
            """\
            specc: 1
            name: demo
            assistant: {name: Aria}
            principles:
              - id: a
                title: A
                statement: S
                weight: 0
              - id: a
                titel: B
                statement: S
            corpus:
              mix: {documents: 0.5, demonstrations: 0.1}
            """
        )
    )
    result = CliRunner().invoke(app, ["validate", "s.yaml"])
    assert result.exit_code == 2
    err = result.stderr
    assert "s.yaml:8:13: principles[0].weight" in err
    assert "s.yaml:9:5: principles[1].title: required field is missing" in err
    assert "s.yaml:10:5: principles[1].titel: unknown key; did you mean `title`?" in err
    assert "s.yaml:9:9: principles[1].id: duplicate principle id 'a'" in err
    assert "s.yaml:13:8: corpus.mix: documents + demonstrations must sum to 1" in err


def test_directory_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(app, ["validate", "d", "missing.yaml"])
    assert result.exit_code == 2
    assert "d: is a directory" in result.stderr
    assert "missing.yaml: no such file" in result.stderr


def test_one_bad_spec_fails_the_batch_but_all_are_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("specc: 1", "specc: 9"))
    result = CliRunner().invoke(app, ["validate", "good.yaml", "bad.yaml"])
    assert result.exit_code == 2
    assert "ok good.yaml: demo" in result.stdout
    assert "bad.yaml:1:8: specc" in result.stderr


def test_subprocess_has_no_traceback(tmp_path):
    import subprocess
    import sys

    (tmp_path / "s.yaml").write_text("specc: 1\nname: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "specc", "validate", str(tmp_path / "s.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "s.yaml:" in proc.stderr


HOSTILE = ["alias-bomb", "deep-brackets", "recursive-alias", "too-big", "include-not-a-fragment",
           "decontam-file-missing", "unknown-tokenizer", "template-unknown-variable"]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_is_quick(tmp_path, case):
    """As a user runs it: a separate process, exit 2, a located message, no traceback, well within seconds."""
    _, files, where, _, fragment = next(c for c in CASES if c[0] == case)
    _write(tmp_path, files)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "specc", "validate", "s.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert any(ln.startswith(where) and fragment in ln for ln in proc.stderr.splitlines()), proc.stderr
    assert elapsed < 5, f"{case} took {elapsed:.1f}s"


@pytest.mark.parametrize("stage", ["facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge"])
def test_validate_renders_every_template(tmp_path, monkeypatch, stage):
    """A custom template of any stage that names an unknown variable fails validate, not a build."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.j2").write_text("{% block user %}Write {{ no_such_variable }}{% endblock %}\n")
    (tmp_path / "s.yaml").write_text(GOOD + f"templates:\n  {stage}: t.j2\n")
    result = CliRunner().invoke(app, ["validate", "s.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"s.yaml:9:{len(stage) + 5}: templates.{stage}: ")
    assert f"t.j2: the {stage} template uses an unknown variable" in result.stderr
    assert "no_such_variable" in result.stderr


def test_ordinary_aliases_load(tmp_path):
    """Anchors that share a few values, as people use them, are well within the limits."""
    (tmp_path / "s.yaml").write_text(
        GOOD.replace("principles:", "x-shared: &reason Aria is trusted because it is reliable.\nprinciples:")
        .replace("x-shared", "description")
        + "    rationale: *reason\n"
        + "  - {id: care, title: Care, statement: Aria cares., rationale: *reason}\n"
        + "corpus:\n  documents:\n    genres: &genres [FAQ, news report]\n    audiences: *genres\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.principles[1].rationale == "Aria is trusted because it is reliable."
    assert spec.corpus.documents.audiences == ["FAQ", "news report"]
