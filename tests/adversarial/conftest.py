"""Fixtures of the adversarial suite (issue 7).

Reuses the hostile suite's fixtures and helpers (``tests/hostile``): the
Guard service under test with its after-checks (alive, nothing leaked, no
internal error), ``spawn_peer``, ``victim`` and ``slow_tree``. They are
loaded from that directory's conftest under another module name and
re-exported here, so both suites share one implementation.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HOSTILE = HERE.parent / "hostile"
for _p in (HERE, HOSTILE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

_spec = importlib.util.spec_from_file_location("hostile_conftest", HOSTILE / "conftest.py")
assert _spec is not None and _spec.loader is not None
_hostile = importlib.util.module_from_spec(_spec)
sys.modules["hostile_conftest"] = _hostile
_spec.loader.exec_module(_hostile)

guard = _hostile.guard
svc = _hostile.svc
short_guard = _hostile.short_guard
short = _hostile.short
spawn_peer = _hostile.spawn_peer
victim = _hostile.victim
slow_tree = _hostile.slow_tree

from adv_support import open_service  # noqa: E402
from hostile_support import Svc  # noqa: E402

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to use a second uid")


@pytest.fixture(scope="module")
def open_guard_svc() -> Iterator[Svc]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a second uid connects")
    yield from open_service("guard", "guard")


@pytest.fixture
def open_guard(open_guard_svc: Svc) -> Iterator[Svc]:
    yield from _hostile._service_fixture(open_guard_svc)
