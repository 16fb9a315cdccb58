"""Domain errors. Library code raises these; only ``cli.py`` turns them into exit codes.

The tree::

    SpeccError                      exit 1 unless a subclass says otherwise
    ├── InputError                  exit 2: the user gave us something we cannot use
    │   ├── SpecError               one or more located problems in spec files
    │   ├── MissingExtraError       an optional dependency is not installed
    │   └── ManifestVersionError    an output directory from an incompatible specc
    └── RunError                    exit 1: a run started and could not finish
        ├── EndpointError           the LLM endpoint is unreachable or misconfigured
        │   ├── AuthError           401/403: the key (and the variable it came from) is wrong
        │   └── ModelNotFoundError  404 on the model
        ├── FailureRateError        too many tasks failed; the build stopped early
        ├── CostCapError            the ``max_usd`` cap was reached; the state is resumable
        ├── ShortBuildError         the corpus was written but a kind fell far short of its quota
        └── OutputError             writing or publishing the corpus failed
            └── OutputBusyError     another build is writing the same output folder
"""

from __future__ import annotations

from dataclasses import dataclass


class SpeccError(Exception):
    """Base of every error specc reports to a user."""

    exit_code = 1


class InputError(SpeccError):
    """The input (spec, flags, files) cannot be used."""

    exit_code = 2


@dataclass(frozen=True)
class SpecIssue:
    """One located problem in a spec file."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(InputError):
    """All problems found in a spec, each with file, line, column and field path."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line or 0, i.col or 0, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))


class MissingExtraError(InputError):
    """An optional feature needs a package that is not installed."""

    def __init__(self, feature: str, extra: str, detail: str = ""):
        msg = f"{feature} needs an optional dependency: pip install 'specc[{extra}]'"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ManifestVersionError(InputError):
    """A manifest written by an incompatible version of specc."""


class RunError(SpeccError):
    """A run started but could not finish."""


class EndpointError(RunError):
    """The LLM endpoint cannot be used (unreachable, wrong URL, bad request)."""


class AuthError(EndpointError):
    """The endpoint rejected the credentials."""


class ModelNotFoundError(EndpointError):
    """The endpoint does not serve the requested model."""


class FailureRateError(RunError):
    """Too many tasks failed; the build stopped instead of grinding on."""


class CostCapError(RunError):
    """The spending cap was reached; finished work is cached and a rerun resumes."""


class OutputError(RunError):
    """Writing or publishing the corpus failed."""


class ShortBuildError(RunError):
    """The corpus was written, but at least one principle × kind ended below half of its quota."""


class OutputBusyError(OutputError):
    """Another build holds the output folder's lock."""
