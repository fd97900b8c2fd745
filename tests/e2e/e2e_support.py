"""Helpers shared by the end-to-end tests (a module, not a conftest, so that
test files can import it by a name no other directory uses)."""

from __future__ import annotations

import os
from pathlib import Path

from aether.testing import ServiceProcess

E2E = Path(__file__).parent


def start_service(target: str, socket_path: Path, *args: str) -> ServiceProcess:
    """Start ``aether service run TARGET`` with the e2e test modules importable."""
    env = {"PYTHONPATH": str(E2E) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "AETHER_RUNTIME_DIR": os.environ.get("AETHER_RUNTIME_DIR", "")}
    return ServiceProcess(target, socket_path, args=args, env=env).start()
