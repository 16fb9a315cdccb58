"""Decontamination: every planted eval overlap is removed, nothing else, with counts per source."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

import pytest

from specc.curate.decontam import HOLDOUT_SOURCE, Decontaminator, read_eval_file
from specc.curate.normalize import normalize
from specc.errors import InputError
from specc.records import Record
from specc.spec.schema import Spec

_p = Path(__file__).parent / "fixtures" / "curate" / "synth.py"
_s = importlib.util.spec_from_file_location("curate_synth", _p)
synth = importlib.util.module_from_spec(_s)
_s.loader.exec_module(synth)


def spec_with(tmp_path: Path, files: list[str], examples: list[dict] | None = None) -> Spec:
    spec = Spec.model_validate(
        {
            "specc": 1,
            "name": "t",
            "assistant": {"name": "Ava"},
            "principles": [{"id": "honesty", "title": "H", "statement": "Be honest.", "examples": examples or []}],
            "corpus": {"decontamination": {"files": files, "ngram": 13}},
        }
    )
    spec._source = tmp_path / "spec.yaml"
    return spec


def test_planted_overlaps_are_removed_and_nothing_else(tmp_path):
    rng = random.Random(11)
    eval_items = [" ".join(synth.sentence(rng, 15, 15) for _ in range(3)) for _ in range(40)]
    evals = tmp_path / "evals"
    evals.mkdir()
    with (evals / "qa.jsonl").open("w") as fh:
        for i, item in enumerate(eval_items[:20]):
            row = {"prompt": item} if i % 2 else {"messages": [{"role": "user", "content": item}]}
            fh.write(json.dumps(row) + "\n")
    (evals / "plain.txt").write_text("\n".join(eval_items[20:]) + "\n\n")
    spec = spec_with(tmp_path, ["evals/qa.jsonl", "evals/plain.txt"])
    step = Decontaminator.from_spec(spec)

    records, planted = [], set()
    for i in range(300):
        text = synth.document(rng, 200)
        words = text.split()
        if i % 10 == 0:  # plant 13 consecutive eval words, with different case and punctuation
            src = eval_items[(i // 10) % 40].split()
            start = rng.randint(0, len(src) - 13)
            chunk = " ".join(src[start : start + 13]).upper() + ","
            words.insert(50, chunk)
            planted.add(i)
        elif i % 10 == 5:  # a near miss: 12 consecutive eval words only
            src = eval_items[(i // 10) % 40].split()
            words.insert(50, " ".join(src[:12]))
        records.append(Record(kind="document", principle_id="honesty", text=" ".join(words)))
    kept = list(step(records))
    kept_ids = {id(r) for r in kept}
    dropped = {i for i, r in enumerate(records) if id(r) not in kept_ids}
    assert dropped == planted
    assert step.drops == {("eval_overlap", "honesty"): len(planted)}
    # planted i uses eval item i // 10: items 0-19 are in qa.jsonl, 20-29 in plain.txt
    assert step.by_source == {"evals/qa.jsonl": 20, "evals/plain.txt": 10}
    assert step.filter(records[0]) == (False, "eval_overlap") and step.filter(records[1]) is True


def test_short_items_and_holdout_examples(tmp_path):
    (tmp_path / "short.txt").write_text("What is the capital of Peru?\n")
    examples = [
        {"user": "Please tell me which mushrooms in my garden are safe to eat tonight", "good": "I can't be sure.",
         "holdout": True},
        {"user": "A visible example that is not held out at all and may appear anywhere", "good": "fine",
         "holdout": False},
    ]
    step = Decontaminator.from_spec(spec_with(tmp_path, ["short.txt"], examples))
    assert step.items == {"short.txt": 1, HOLDOUT_SOURCE: 2}

    def demo(user: str) -> Record:
        return Record(
            kind="demonstration",
            principle_id="honesty",
            messages=[{"role": "user", "content": user}, {"role": "assistant", "content": "Happy to help with that."}],
        )

    records = [
        demo("Quick one: what is the CAPITAL of Peru? I forgot."),  # whole short item inside
        demo("What is the capital of France?"),
        demo("please tell me which mushrooms in my garden are safe to eat tonight, thanks"),  # holdout
        demo("A visible example that is not held out at all and may appear anywhere"),
        demo("I can't be sure."),  # equals a 4-word holdout reply: too generic to count as a leak
    ]
    kept = list(step(records))
    assert kept == [records[1], records[3], records[4]]
    assert step.skipped == 1
    assert step.by_source == {"short.txt": 1, HOLDOUT_SOURCE: 1}


def test_gzip_jsonl_with_text_field(tmp_path):
    path = tmp_path / "e.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"text": "one two three"}) + "\n")
    assert read_eval_file(path) == ["one two three"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "ok"}\n{"text": oops}\n', "bad.jsonl:2: not valid JSON"),
        ("fields.jsonl", '\n{"question": "q"}\n', "fields.jsonl:2: no `text`, `prompt` or `messages` field"),
        ("list.jsonl", '["a"]\n', "list.jsonl:1: expected a JSON object"),
        ("msgs.jsonl", '{"messages": [{"role": "user"}]}\n', "msgs.jsonl:1: every message needs a string `content`"),
    ],
)
def test_malformed_eval_files_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message.replace("`", ".").replace("[", r"\[")):
        Decontaminator.from_spec(spec_with(tmp_path, [name]))


def test_missing_and_binary_eval_files(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: decontamination file not found"):
        Decontaminator.from_spec(spec_with(tmp_path, ["nope.jsonl"]))
    (tmp_path / "bin.txt").write_bytes(b"fine line\n\xff\xfe\x00 broken\n")
    with pytest.raises(InputError, match="bin.txt:2: not UTF-8"):
        Decontaminator.from_spec(spec_with(tmp_path, ["bin.txt"]))


def test_no_sources_keeps_everything(tmp_path):
    step = Decontaminator.from_spec(spec_with(tmp_path, []))
    recs = [Record(kind="document", principle_id="honesty", text="anything at all")]
    assert list(step(recs)) == recs


def test_an_item_in_two_sources_counts_for_both():
    item = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    step = Decontaminator({"a.txt": [item, "unrelated words here"], "b.txt": ["x y", item.upper()]}, ngram=13)
    rec = Record(kind="document", principle_id="p", text="Before. " + item + ". After.")
    assert step.contaminated([normalize(rec.text)]) == [{0, 1}]
    assert list(step([rec])) == []
    assert step.by_source == {"a.txt": 1, "b.txt": 1}
