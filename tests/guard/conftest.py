"""Fixtures for Guard's tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_support import GuardEnv


@pytest.fixture
def genv() -> Iterator[GuardEnv]:
    base = Path(tempfile.mkdtemp(prefix="ag-"))
    os.chmod(base, 0o755)
    tree = base / "tree"
    tree.mkdir()
    runtime = base / "run"
    runtime.mkdir(mode=0o700)
    ge = GuardEnv(base, tree, base / "guard.toml", base / "state", runtime)
    ge.write_policy()
    yield ge
    for svc in ge.services:
        svc.kill()
    shutil.rmtree(base, ignore_errors=True)
