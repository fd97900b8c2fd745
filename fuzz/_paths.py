"""Make the repository's test helpers importable from a harness run as a script."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "tests" / "wire", ROOT / "tests" / "e2e", ROOT / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
