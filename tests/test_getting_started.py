"""docs/getting-started.md, followed literally on a fresh copy of the repository: build, inspect, push."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "getting-started.md"
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_LLAMA and not os.environ.get("SPECC_REQUIRE_LOCAL"), reason="needs pip install 'specc[local]'"
    ),
]


def blocks(lang: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    after_install = text.split("## 2.", 1)[1]  # installing is what the test environment already did
    return re.findall(rf"```{lang}\n(.*?)```", after_install, re.S)


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_doc_output_matches_the_real_validate_line():
    proc = subprocess.run(
        [sys.executable, "-m", "specc", "validate", "examples/support/spec.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in DOC.read_text(encoding="utf-8")


@pytest.mark.timeout(1200)  # the walkthrough builds with the CPU model: minutes, not seconds
def test_follow_getting_started(tmp_path):
    repo = fresh_copy(tmp_path / "specc")
    hub_port = 8788
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "\n".join(blocks("bash"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPECC_", "HF_", "OPENAI_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HOME"] = str(tmp_path / "hf-home")
    env["HF_DATASETS_CACHE"] = str(tmp_path / "hf-datasets")
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    out = repo / "build" / "tandem-support"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents"] > 0
    assert (out / "report.html").is_file()
    assert "pushed" in proc.stdout.lower() or f"127.0.0.1:{hub_port}" in proc.stdout

    for snippet in blocks("python"):
        py = subprocess.run([sys.executable, "-c", snippet], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert py.returncode == 0, py.stderr[-3000:]
