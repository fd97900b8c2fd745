"""A session that produced a large result gives its result buffer back once
it has been idle for a while (session.TRIM_AFTER): idle sessions must not
pin megabytes each. Checked on the session object, so the service runs in
this process (a thread), as in test_switch_interval."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import aether
from aether.service import OperationContext
from aether.service.session import TRIM_THRESHOLD
from aether.testing.inprocess import serving_in_thread
from aether.testing.waiting import wait_until

MiB = 1024 * 1024


@aether.operation(code=0x0D01, name="trimtest.big", result=bytes)
class Big(aether.Params, frozen=True, kw_only=True):
    size: int


schema = sys.modules[__name__]


def _service() -> aether.Service:
    svc = aether.Service("trimtest-session", schema=schema)

    @svc.handler(Big, inline=True)
    def big(params: Big, ctx: OperationContext) -> bytes:
        return b"\x01" * params.size

    return svc


@pytest.mark.parametrize("transport", ["mapping", "memory", "socket"])
def test_idle_session_gives_back_its_large_result_buffer(tmp_path: Path, transport: str) -> None:
    svc = _service()
    with serving_in_thread(svc, tmp_path / "t.ctl"), \
            aether.Client(tmp_path / "t.ctl", schema=schema, transport=transport,
                          block_size=4 * MiB) as client:
        assert client.call(Big(size=2 * MiB)) == b"\x01" * (2 * MiB)
        (session,) = svc._sessions.values()
        assert len(session._result_buffer) >= 2 * MiB
        wait_until(lambda: len(session._result_buffer) <= TRIM_THRESHOLD, 10,
                   "the idle session to give its result buffer back", watch_pid=os.getpid())
        assert client.call(Big(size=10)) == b"\x01" * 10  # and it still serves
