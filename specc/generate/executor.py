"""Which executor a build runs its tasks with: the engine (synchronous calls) or batches (provider or files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from specc.errors import InputError
from specc.generate.batchfiles import LineResult, read_results


@dataclass(frozen=True)
class BatchFiles:
    """The files path, for self-hosted engines: read result files first, write the next ready wave, stop."""

    export_dir: Path | None = None
    imports: tuple[Path, ...] = ()


def refuse_local_batches(spec, provider: str | None, files: BatchFiles | None) -> None:
    """Batches need an OpenAI-compatible engine: say so before the embedded model is even loaded."""
    if (files is not None or spec.generator.batch) and (provider or spec.generator.provider) == "local":
        raise InputError(
            "batches are requests to an OpenAI-compatible engine, and the embedded local model is not one; set "
            "`generator.provider: openai` and `generator.model` to the model name the engine serves"
        )


def make_executor(spec, llm, cache, progress=None, files: BatchFiles | None = None):
    """``Engine`` unless ``generator.batch`` is set or ``files`` is given; both have the same ``run`` contract."""
    from specc.generate.engine import Engine

    if files is None and not spec.generator.batch:
        return Engine.from_spec(spec, llm, cache, progress=progress)
    if not hasattr(llm, "body"):
        raise InputError(
            f"batches are requests to an OpenAI-compatible engine, and {llm.id} is not one; set "
            "`generator.provider: openai` and `generator.model` to the model name the engine serves"
        )
    from specc.generate.batch import BatchExecutor
    from specc.generate.batchstore import BatchStore

    if files is None:
        return BatchExecutor.from_spec(spec, llm, cache, progress)
    export_dir = files.export_dir
    if export_dir is None:
        last = BatchStore(cache).last_export_dir(spec.name)
        if last is None:
            raise InputError(
                "--batch-import continues the build on the files path, and no earlier wave of this build was "
                "exported from this cache: say where the next wave goes with --batch-export DIR"
            )
        export_dir = Path(last)
    return BatchExecutor.from_spec(spec, llm, cache, progress, export_dir=export_dir,
                                   imports=read_imports(files.imports))


def read_imports(paths) -> dict[str, LineResult]:
    """{task key: result line} from OpenAI-format batch output files; a result beats an error for the same key."""
    out: dict[str, LineResult] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read the batch results {path}: {e.strerror or e}") from None
        for line in read_results(data, str(path)):
            prev = out.get(line.key)
            if prev is None or prev.failure is not None:
                out[line.key] = line
    return out


def batch_info(spec, files: BatchFiles | None, totals: dict) -> dict | None:
    """What the manifest says about the batch path of a build, or None for a synchronous build."""
    if files is None and not spec.generator.batch:
        return None
    from specc.generate.pricing import BATCH_DISCOUNT

    info = {"path": "files" if files is not None else "provider"}
    if files is None:
        info["price_factor"] = BATCH_DISCOUNT
    info.update({k: totals.get(k, 0) for k in ("waves", "batches", "resumed", "imported")})
    return info
