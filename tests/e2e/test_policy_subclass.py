"""A Policy subclass is asked about every operation, inline ones included:
the short paths may skip only the built-in Policy's check, and only for an
operation no rule names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ownpolicy_svc as own
import pytest
from e2e_support import start_service

import aether
from aether.errors import AuthorizationError
from aether.testing import ServiceProcess
from aether.wire import Status


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    path: Path = tmp_path_factory.mktemp("own") / "own.ctl"
    service = start_service("ownpolicy_svc:service", path)
    yield service
    service.kill()


@pytest.mark.parametrize("transport", ["mapping", "memory", "socket"])
def test_a_policy_subclass_refuses_an_inline_operation_on_every_transport(
        svc: ServiceProcess, transport: str) -> None:
    with aether.Client(svc.socket_path, schema=own, transport=transport) as client:
        assert client.transport == transport
        for _ in range(3):  # the first call and the ones after it take the short path
            with pytest.raises(AuthorizationError) as info:
                client.call(own.Refused(a=1))
            assert info.value.status == Status.REJECTED_UNAUTHORIZED
            assert client.call(own.Allowed(a=41)) == 42
