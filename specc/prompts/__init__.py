"""One Jinja2 template per stage; a template's content hash enters every task key it renders.

A template defines a ``system`` and/or a ``user`` block; each non-empty block becomes
one message. Spec text reaches a template only as variable values, which Jinja2
never re-parses, so a literal ``{{`` in a principle is just text.

Two built-in sets (presets): ``default`` (this folder) for capable models, and ``small``
(``small/``): short, single-instruction prompts the embedded 135M model can follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from specc.errors import InputError
from specc.generate.base import Message
from specc.records import sha256_hex

STAGES: tuple[str, ...] = ("facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge")
# ``specc eval``: writing a held-out suite's items, and grading a target's replies. Built in only: the
# spec's ``templates`` section overrides the build's stages.
EVAL_STAGES: tuple[str, ...] = ("eval_items", "grade")
BLOCKS: tuple[str, ...] = ("system", "user")

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def marker(stage: str) -> str:
    """The first line of every built-in prompt for ``stage``: lets a test server tell stages apart."""
    return f"# specc:{stage}"


@dataclass(frozen=True, eq=False)
class PromptTemplate:
    """A compiled stage template and the hash of its source."""

    stage: str
    source: str
    origin: str  # "builtin" or the override file
    hash: str
    _tmpl: jinja2.Template

    def render(self, **ctx) -> list[Message]:
        """The chat messages for ``ctx``: one per non-empty block, in system, user order."""
        try:
            if not any(b in self._tmpl.blocks for b in BLOCKS):
                text = self._tmpl.render(**ctx).strip()
                return [{"role": "user", "content": text}] if text else []
            out: list[Message] = []
            for block in BLOCKS:
                fn = self._tmpl.blocks.get(block)
                if fn is None:
                    continue
                text = "".join(fn(self._tmpl.new_context(ctx))).strip()
                if text:
                    out.append({"role": block, "content": text})
            return out
        except jinja2.UndefinedError as e:
            raise InputError(
                f"{self.origin}: the {self.stage} template uses an unknown variable ({e.message}); "
                f"available: {', '.join(sorted(ctx))}"
            ) from None
        except jinja2.TemplateError as e:
            raise InputError(f"{self.origin}: the {self.stage} template failed to render: {e}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as e:
            # An expression the template evaluates (``{{ idea.title / 2 }}``) fails the same way.
            raise InputError(
                f"{self.origin}: the {self.stage} template failed to render: {type(e).__name__}: {e}"
            ) from None


def _compile(stage: str, source: str, origin: str) -> PromptTemplate:
    try:
        tmpl = _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise InputError(f"{origin}:{e.lineno}: {stage} template: {e.message}") from None
    return PromptTemplate(stage, source, origin, sha256_hex(source)[:16], tmpl)


PRESETS: tuple[str, ...] = ("default", "small")


@lru_cache(maxsize=None)
def _builtin(stage: str, preset: str) -> PromptTemplate:
    rel = f"{stage}.j2" if preset == "default" else f"{preset}/{stage}.j2"
    source = resources.files(__name__).joinpath(rel).read_text(encoding="utf-8")
    return _compile(stage, source, f"specc/prompts/{rel}")


def builtin_template(stage: str, preset: str = "default") -> PromptTemplate:
    if stage not in STAGES and stage not in EVAL_STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    if preset not in PRESETS:
        raise ValueError(f"unknown prompt preset {preset!r}")
    # The eval stages have one prompt set: the suite and the grading do not depend on the generator's size.
    return _builtin(stage, "default" if stage in EVAL_STAGES else preset)


def load_template(stage: str, spec=None, preset: str = "default") -> PromptTemplate:
    """The template for ``stage``: ``spec.templates.<stage>`` if set, else the ``preset``'s built-in one."""
    override = getattr(spec.templates, stage, None) if spec is not None else None
    if not override:
        return builtin_template(stage, preset)
    path: Path = spec.resolve(override)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"templates.{stage}: cannot read {path}: {e.strerror or e}") from None
    return _compile(stage, source, str(path))


def load_templates(spec=None, preset: str = "default", stages: tuple[str, ...] = STAGES) -> dict[str, PromptTemplate]:
    return {stage: load_template(stage, spec, preset) for stage in stages}
