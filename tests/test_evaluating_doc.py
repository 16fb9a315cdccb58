"""docs/evaluating.md's worked example, run as written on a fresh copy of the repository; its output is the doc's."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from test_getting_started import fresh_copy

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "evaluating.md"


def example() -> tuple[str, list[str]]:
    """The worked example's commands and the output blocks it shows."""
    section = DOC.read_text(encoding="utf-8").split("## A worked example", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return script, re.findall(r"```text\n(.*?)```", section, re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def test_the_worked_example_prints_what_the_doc_shows(tmp_path):
    repo = fresh_copy(tmp_path / "specc")
    script, shown = example()
    for port in ("8790", "8791", "8792"):  # other test runs may hold the documented ports
        script = script.replace(port, str(free_port()))
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPECC_", "OPENAI_", "COLUMNS"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    out = lines(proc.stdout)
    for block in shown:
        want = lines(block)
        found = any(out[i:i + len(want)] == want for i in range(len(out) - len(want) + 1))
        assert found, ("docs/evaluating.md shows output the example no longer prints; update it from this run:\n"
                       + proc.stdout[-6000:])
    assert (repo / "build" / "aria" / "eval" / "items.jsonl").is_file()
    assert 'data-section="eval"' in (repo / "build" / "aria" / "report.html").read_text(encoding="utf-8")
