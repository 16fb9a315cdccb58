"""Print pip constraints that pin every direct dependency (and those of the named extras) to its declared minimum."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
project = pyproject["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
for req in requirements:
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", req)
    if not m:
        sys.exit(f"{req!r} declares no minimum (name>=version); give it one")
    print(f"{m.group(1)}=={m.group(3)}")
