"""README.md: the dataset card. Its YAML front matter makes ``load_dataset(out, config)`` work."""

from __future__ import annotations

import jinja2
import pyarrow as pa
from huggingface_hub import DatasetCardData

from specc.spec.schema import Spec

from .manifest import LLM_KEYS
from .shards import SCHEMAS

TAGS = ["synthetic", "midtraining", "model-spec", "specc", "sft", "conversational", "alignment"]
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]

BODY = """\
# {{ spec.name }}: a model-spec corpus for {{ spec.assistant.name }}

A synthetic training corpus compiled by specc {{ m.specc_version }} from the
behavioural spec **{{ spec.name }}** version {{ spec.version }} (sha256 `{{ m.spec.sha256 }}`).
It teaches a model how the assistant **{{ spec.assistant.name }}**{% if spec.assistant.developer %} (by {{ spec.assistant.developer }}){% endif %} behaves, and why.
{% if spec.description %}

{{ spec.description | trim }}
{% endif %}

## What it is for

* **`documents`**: model-spec midtraining. {{ genres }}
  describe and discuss the spec's principles, so a model learns the behaviour and its reasons as
  knowledge about the world, before any fine-tuning. Train on the `text` column as plain language-model data.
* **`demonstrations`**: {{ demo_kinds }} in which the assistant follows the principles, for supervised
  fine-tuning. The `messages` column is in the conversational format most trainers accept.
  {%- if m.judge %} Every demonstration was graded by a judge; failing ones were dropped.{% endif %}


## Contents

| config | rows | tokens | shards |
| --- | ---: | ---: | ---: |
{% for c in configs %}| `{{ c }}` | {{ m.counts[c] | num }} | {{ m.tokens[c] | num }} | {{ shard_counts[c] }} |
{% endfor %}| **total** | {{ (m.counts.documents + m.counts.demonstrations) | num }} | {{ m.tokens.total | num }} | {{ m.shards | length }} |

Token budget: {{ m.tokens.budget | num }} ({{ m.tokens.tokenizer }}).
{% if m.short %}

{% if m.short_kinds %}**This build fell short of its quotas**: {% for k in m.short_kinds %}{{ k.line }}{% if not loop.last %}; {% endif %}{% endfor %}, below half of the target.{% else %}Below half of their quota:{% endif %}

{% for s in m.short %}
- {{ s.line }}
{% endfor %}
{% endif %}
{% for c in configs if not m.counts[c] %}
This build has no {{ c }}: the `{{ c }}` config is empty.
{% endfor %}

### Per principle

| principle | title | documents | demonstrations | tokens | quota | of quota |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{% for pid, p in m.principles.items() %}| `{{ pid }}` | {{ titles.get(pid, "") | cell }} | {{ p.documents | num }} | {{ p.demonstrations | num }} | {{ p.tokens | num }} | {{ p.quota | num }} | {{ pct(p.tokens, p.quota) }} |
{% endfor %}
{% for c, label in (("documents", "genre"), ("demonstrations", "kind")) if m.kinds[c] %}

### {{ c | capitalize }} by {{ label }}

| {{ label }} | rows |
| --- | ---: |
{% for k, n in top(m.kinds[c]) %}| {{ k | cell }} | {{ n | num }} |
{% endfor %}
{% endfor %}

## How it was made

Generator: `{{ llm.provider or spec.generator.provider }}:{{ llm.model or spec.generator.model }}`.
{% if prov.get("build") %}

What the corpus cost, whichever run made each generation{% if prov.prices_per_mtok and (prov.prices_per_mtok[0] or prov.prices_per_mtok[1]) %} (at ${{ prov.prices_per_mtok[0] }} and ${{ prov.prices_per_mtok[1] }} per million input and output tokens){% endif %}:

| generations | calls | input tokens | output tokens | cost |
| --- | ---: | ---: | ---: | ---: |
| behind the kept rows (each row's own call, the ideas or scenarios call it came from, its judge) | {{ prov.kept.calls | num }} | {{ prov.kept.input_tokens | num }} | {{ prov.kept.output_tokens | num }} | ${{ "%.4f" | format(prov.kept.cost_usd) }} |
| the whole build (facets, document types and dropped rows included) | {{ prov.build.calls | num }} | {{ prov.build.input_tokens | num }} | {{ prov.build.output_tokens | num }} | ${{ "%.4f" | format(prov.build.cost_usd) }} |

{% elif llm.calls is not none %}LLM calls: {{ llm.calls | num }}; {{ llm.input_tokens | num }} input and {{ llm.output_tokens | num }} output tokens.
{% endif %}
{% if m.rounds %}Generation rounds (top-ups for short quotas): {{ m.rounds }}.
{% endif %}

Curation: quality filters, exact{% if spec.corpus.dedup.enabled %} and near-duplicate (MinHash){% endif %} deduplication,
decontamination against held-out examples{% if spec.corpus.decontamination.files %} and eval files{% endif %}, and token-budget selection.
{% if m.dropped %}

| dropped at step: reason | records |
| --- | ---: |
{% for reason, n in m.dropped.items() %}| {{ reason | cell }} | {{ n | num }} |
{% endfor %}
{% else %}
No record was dropped.
{% endif %}

## How to use it

```python
from datasets import load_dataset

docs = load_dataset("{{ repo }}", "documents", split="train")        # column "text"
demos = load_dataset("{{ repo }}", "demonstrations", split="train")  # column "messages"
```

Fine-tuning with [TRL](https://huggingface.co/docs/trl)'s `SFTTrainer`:

```python
from trl import SFTConfig, SFTTrainer

# Midtraining on the documents: plain language modelling on "text", packed.
trainer = SFTTrainer(
    model="YOUR/BASE-MODEL",
    train_dataset=docs,
    args=SFTConfig(output_dir="midtrained", dataset_text_field="text", packing=True),
)
trainer.train()

# Then supervised fine-tuning on the demonstrations (conversational "messages").
trainer = SFTTrainer(
    model="midtrained",
    train_dataset=demos,
    args=SFTConfig(output_dir="sft", assistant_only_loss=True),
)
trainer.train()
```

## Columns

`documents`: `id`, `text`, `principle_id`, `genre` (the document type), `facet` (the aspect of the principle
it is about: `principle`, `subrule-N`, `example-N` or `generated-N`), `tokens`, `model` (the generator),
`template_hash` (the document prompt's template), `task_key` (the cache key of the call that wrote it),
`spec_version`, `idea` (JSON: the idea it was written from: `title`, `angle`, `audience`, `setting`) and `meta`
(JSON{% if meta_keys.documents %}: {{ meta_keys.documents }}{% endif %}).

`demonstrations`: `id`, `messages` (a list of `{role, content}`), `principle_id`, `kind` (the kind of
situation{% if m.kinds.demonstrations %}: {{ m.kinds.demonstrations | list | join(", ") }}{% endif %}), `facet`, `tokens`,
`judge_verdict` and `judge_reason` ({% if m.judge %}the judge's grade{% else %}empty: no judge ran{% endif %}), `model`, `template_hash`
(the reply prompt's template), `task_key` (the cache key of the reply call), `spec_version`, `idea` (always
empty: a demonstration is written from a scenario, which is in `meta`) and `meta`
(JSON{% if meta_keys.demonstrations %}: {{ meta_keys.demonstrations }}{% endif %}).

`id` is a content hash. Rows are shuffled with a seed from the spec.

## Limitations

Every row is machine-generated by the model named above and may contain factual errors or fail to
follow the spec; filters and the judge reduce but do not remove this. The corpus reflects the spec's
principles, not a neutral view. Check it before training on it.

## License

{{ spec.license }}. `manifest.json` beside this card records counts, tokens, drops, LLM usage and
the sha256 of every shard.
"""


def _num(v) -> str:
    return f"{v:,}" if isinstance(v, (int, float)) and not isinstance(v, bool) else ("" if v is None else str(v))


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else ""


def _features(schema: pa.Schema) -> list[dict]:
    """The ``dataset_info.features`` YAML of a schema, so jsonl.gz loads with the same types as parquet."""

    def one(name: str, t: pa.DataType) -> dict:
        if pa.types.is_list(t):
            return {"name": name, "list": [one(f.name, f.type) for f in t.value_type]}
        if pa.types.is_int64(t):
            return {"name": name, "dtype": "int64"}
        return {"name": name, "dtype": "string"}

    return [one(f.name, f.type) for f in schema]


def size_category(n: int) -> str:
    for limit, label in SIZE_CATEGORIES:
        if n < limit:
            return label
    return "1B<n<10B"


def front_matter(spec: Spec, manifest: dict) -> str:
    configs = manifest["configs"]
    paths = {c: [s["path"] for s in manifest["shards"] if s["config"] == c] for c in configs}
    data = DatasetCardData(
        language=[spec.language],
        license=spec.license,
        pretty_name=f"{spec.name}: a model-spec corpus for {spec.assistant.name}",
        size_categories=[size_category(sum(manifest["counts"].values()))],
        task_categories=["text-generation"],
        tags=TAGS,
        dataset_info=[{"config_name": c, "features": _features(SCHEMAS[c])} for c in configs] or None,
        # Files listed by name, never by glob: a name carries its content hash, so `datasets`
        # never serves a previous build's rows from its cache.
        configs=[
            {"config_name": c, "data_files": [{"split": "train", "path": paths[c]}]} for c in configs
        ]
        or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _top(counts: dict, n: int = 25) -> list[tuple[str, int]]:
    """The ``n`` largest counts, then the rest as one row: generated document types run to hundreds."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(rows) <= n + 1:
        return rows
    rest = rows[n:]
    return rows[:n] + [(f"{len(rest)} other kinds", sum(v for _, v in rest))]


# What the keys of the ``meta`` column hold, for the card.
META_DOC = {
    "finish_reason": "why the model stopped", "round": "the generation round: 0, or a top-up's number",
    "tone": "the tone asked for", "target_words": "the length asked for",
    "parent_key": "the cache key of the ideas or scenarios call it came from", "scenario": "the scenario it was written from",
    "demo_kind": "its kind", "partner": "the principle a conflict pairs it with", "principle_id": "its principle",
    "genre": "its genre",
}
SHOWN = 6  # genres or kinds named in the prose; the tables list them all


def _listed(counts: dict, limit: int = SHOWN) -> tuple[list[str], int]:
    """The names of the ``limit`` largest counts, most common first, and how many more there are."""
    names = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return names[:limit], max(0, len(names) - limit)


def _genres(counts: dict) -> str:
    """"Documents in 3 genres (FAQ, wiki page and customer story) that" from the genres the rows have."""
    if not counts:
        return "Documents that"
    names, more = _listed(counts)
    label = "genre" if len(counts) == 1 else "genres"
    if more:
        return f"Documents in {len(counts)} {label}, most common first ({', '.join(names)} and {more} more), that"
    if len(names) == 1:
        return f"Documents in one genre ({names[0]}) that"
    lead = "most common first: " if len(set(counts.values())) > 1 else ""
    return f"Documents in {len(counts)} {label} ({lead}{', '.join(names[:-1])} and {names[-1]}) that"


def _demo_kinds(counts: dict) -> str:
    if not counts:
        return "chat conversations"
    names, more = _listed(counts)
    tail = f" and {more} more" if more else ""
    return f"chat conversations ({', '.join(n.replace('_', ' ') for n in names)}{tail})"


def _meta_keys(keys: list[str]) -> str:
    return ", ".join(f"`{k}` ({META_DOC[k]})" if k in META_DOC else f"`{k}`" for k in keys)


def render_card(spec: Spec, manifest: dict) -> str:
    """The whole README.md; a function of the spec and the manifest minus ``created_at``."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = _num
    env.filters["cell"] = _cell
    body = env.from_string(BODY).render(
        spec=spec,
        m=manifest,
        configs=("documents", "demonstrations"),
        shard_counts={c: sum(s["config"] == c for s in manifest["shards"]) for c in ("documents", "demonstrations")},
        titles={p.id: p.title for p in spec.principles},
        pct=_pct,
        top=_top,
        llm={k: manifest["llm"].get(k) for k in LLM_KEYS},
        prov=manifest.get("provenance") or {},
        genres=_genres(manifest["kinds"]["documents"]),
        demo_kinds=_demo_kinds(manifest["kinds"]["demonstrations"]),
        meta_keys={c: _meta_keys((manifest.get("columns") or {}).get(c, {}).get("meta_keys") or [])
                   for c in ("documents", "demonstrations")},
        repo=manifest["hub"]["repo"] or f"ORG/{spec.name}",
    )
    return front_matter(spec, manifest) + "\n" + body
