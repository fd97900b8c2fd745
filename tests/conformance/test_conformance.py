"""The shared conformance suite (aether.testing.conformance) over every
transport: memory, mapping and socket, each against a real test service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aether_testsvc
import pytest
from e2e_support import start_service

from aether.testing import ServiceProcess
from aether.testing.conformance import TRANSPORTS, TransportConformance


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service(runtime_dir: Path) -> Iterator[ServiceProcess]:
    svc = start_service("aether_testsvc:service", runtime_dir / "testsvc.ctl")
    yield svc
    svc.kill()


class TestConformance(TransportConformance):
    schema = aether_testsvc
