"""Shared fixtures: isolated runtime directories and real service processes."""

from __future__ import annotations

import os
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


def start_service(target: str, socket_path: Path, *args: str) -> ServiceProcess:
    env = {"PYTHONPATH": str(TESTS / "e2e") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "AETHER_RUNTIME_DIR": os.environ.get("AETHER_RUNTIME_DIR", "")}
    return ServiceProcess(target, socket_path, args=args, env=env).start()


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
