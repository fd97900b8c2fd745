"""A ``call`` interrupted while it waits (Ctrl-C, any exception a signal
handler raises) leaves its operation in flight, reachable as
``Client.in_flight``, on every transport and on both the short and the
general call paths: the caller can wait for its outcome, and the session
takes calls again once it has ended. Before ``in_flight``, the short paths
left the session busy with no operation to wait for.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
import shortpath_svc as sp
from e2e_support import start_service

import aether
from aether.errors import BusyResourceError
from aether.testing import ServiceProcess
from aether.testing.waiting import wait_until


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    path = tmp_path_factory.mktemp("intr") / "intr.ctl"
    service = start_service("shortpath_svc:service", Path(path))
    yield service
    service.kill()


def _interrupted_call(client: aether.Client, params: sp.Hold, short: bool,
                      service_pid: int) -> None:
    """Call ``params``; SIGALRM (raising Interrupted) once the handler runs."""
    failures: list[BaseException] = []

    def interrupt_when_started() -> None:
        try:
            wait_until(lambda: os.path.exists(params.started), 30, "the handler to start",
                       watch_pid=service_pid)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        os.kill(os.getpid(), signal.SIGALRM)  # handled in the main thread

    previous = signal.signal(signal.SIGALRM, _interrupt)
    helper = threading.Thread(target=interrupt_when_started)
    helper.start()
    try:
        with pytest.raises(Interrupted):
            if short:
                client.call(params)
            else:  # a progress callback takes the general path
                client.call(params, on_progress=lambda op: None)
    finally:
        helper.join()
        signal.signal(signal.SIGALRM, previous)
    assert not failures, failures


@pytest.mark.parametrize("short", [True, False], ids=["short-path", "general-path"])
@pytest.mark.parametrize("transport", ["memory", "socket", "mapping"])
def test_an_interrupted_call_stays_in_flight_until_waited_for(
        svc: ServiceProcess, tmp_path: Path, transport: str, short: bool) -> None:
    params = sp.Hold(started=str(tmp_path / "started"), release=str(tmp_path / "release"))
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        assert client.transport == transport
        assert client.in_flight is None
        _interrupted_call(client, params, short, svc.pid)

        op = client.in_flight
        assert op is not None, "the interrupted operation was dropped"
        assert op.name == "sp.hold" and not op.finished
        with pytest.raises(BusyResourceError):
            client.call(sp.Add(a=1, b=2))

        Path(params.release).touch()
        assert op.wait(30) == "released"
        assert client.in_flight is None
        assert client.call(sp.Add(a=1, b=2)) == 3


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_a_reply_received_before_the_interrupt_is_not_lost(
        svc: ServiceProcess, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interrupt lands after the DONE was read off the socket and before
    it was handled: whoever waits for the operation gets that DONE's result
    (it cannot come again) rather than a timeout."""
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        assert client.call(sp.Add(a=1, b=1)) == 2
        receive = client.proto.receive
        hits: list[bytes] = []

        def interrupted_once(data: bytes) -> object:
            if not hits:
                hits.append(data)
                raise Interrupted  # as a signal handler would, at this point
            return receive(data)

        monkeypatch.setattr(client.proto, "receive", interrupted_once)
        with pytest.raises(Interrupted):
            client.call(sp.Add(a=2, b=3))
        assert hits, "the reply never arrived"
        op = client.in_flight
        assert op is not None
        assert op.wait(5) == 5
        assert client.call(sp.Add(a=3, b=4)) == 7
