"""Shared fixtures: isolated runtime directories and real service processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.testing import ServiceProcess, isolated_runtime

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "e2e"))


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    with isolated_runtime() as path:
        yield path


from e2e_support import start_service  # noqa: E402


@pytest.fixture
def testsvc(runtime_dir: Path) -> Iterator[ServiceProcess]:
    """The test service (tests/e2e/aether_testsvc.py) in its own process."""
    svc = start_service("aether_testsvc:service", runtime_dir / "testsvc.ctl")
    yield svc
    svc.kill()


@pytest.fixture
def guard(runtime_dir: Path) -> Iterator[ServiceProcess]:
    """Aether Guard in its own process."""
    svc = start_service("guard", runtime_dir / "guard.ctl")
    yield svc
    svc.kill()


@pytest.fixture(scope="module")
def shortpath_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service whose operations all run inline (tests/e2e/shortpath_svc.py),
    one per test module."""
    service = start_service("shortpath_svc:service", tmp_path_factory.mktemp("sp") / "sp.ctl")
    yield service
    service.kill()
