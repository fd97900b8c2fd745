"""Calls interrupted by an exception that is not the protocol's own (Ctrl-C's
``KeyboardInterrupt``, anything a signal handler or a progress callback
raises), on every transport and on the short and the general call paths.

Python may raise such an exception after any call returns: after a request
went out but before its send returned, after a reply was received but
before it was handled. The client then ends the session (``_abandon``): no
later call may get another call's reply, and none may wait forever for a
reply already taken. The next call opens a new session. A call whose own
``timeout`` runs out is different: its operation keeps running and
``Client.in_flight`` hands it over.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import shortpath_svc as sp
from e2e_support import start_service

import aether
from aether.errors import AetherTimeoutError
from aether.testing import ServiceProcess
from aether.testing.waiting import wait_until

TRANSPORTS = ["memory", "socket", "mapping"]


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


@pytest.fixture(scope="module")
def svc(shortpath_svc: ServiceProcess) -> ServiceProcess:
    return shortpath_svc


def _hold(tmp_path: Path) -> sp.Hold:
    return sp.Hold(started=str(tmp_path / "started"), release=str(tmp_path / "release"))


def _call(client: aether.Client, params: Any, short: bool, **kw: Any) -> Any:
    if short:
        return client.call(params, **kw)
    return client.call(params, on_progress=lambda op: None, **kw)  # the general path


def _sessions(svc: ServiceProcess) -> int:
    with aether.Client(svc.socket_path, schema=sp, transport="socket") as probe:
        return probe.status().sessions - 1  # not counting the probe


def _interrupted_while_waiting(client: aether.Client, params: sp.Hold, short: bool,
                               service_pid: int) -> None:
    """Call ``params``; SIGALRM (raising Interrupted) once its handler runs."""
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
            _call(client, params, short)
    finally:
        helper.join()
        signal.signal(signal.SIGALRM, previous)
    assert not failures, failures


@pytest.mark.parametrize("short", [True, False], ids=["short-path", "general-path"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_interrupted_wait_ends_the_session_and_the_next_call_works(
        svc: ServiceProcess, tmp_path: Path, transport: str, short: bool) -> None:
    params = _hold(tmp_path)
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        assert client.transport == transport
        _interrupted_while_waiting(client, params, short, svc.pid)
        assert client.in_flight is None
        Path(params.release).touch()  # let the old session's handler finish
        assert _call(client, sp.Add(a=1, b=2), short) == 3  # on a new session
        assert client.transport == transport
        wait_until(lambda: _sessions(svc) == 1, 10, "the interrupted session to end",
                   watch_pid=svc.pid)


@pytest.mark.parametrize("short", [True, False], ids=["short-path", "general-path"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_call_that_times_out_stays_in_flight(svc: ServiceProcess, tmp_path: Path,
                                               transport: str, short: bool) -> None:
    params = _hold(tmp_path)
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        with pytest.raises(AetherTimeoutError):
            _call(client, params, short, timeout=0.5)
        op = client.in_flight
        assert op is not None and op.name == "sp.hold" and not op.finished
        Path(params.release).touch()
        assert op.wait(30) == "released"
        assert client.in_flight is None
        assert _call(client, sp.Add(a=1, b=2), short) == 3


def _raise_once_after(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, then Interrupted the first time: as a signal handler would
    raise it right after that call returned."""
    done: list[bool] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            raise Interrupted
        return result
    return wrapper


class _PutThenInterrupt:
    """A ring writer whose first ``put`` publishes the frame and then raises
    Interrupted; everything else (``seq``, ``head``...) is the real one's."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.put = _raise_once_after(writer.put)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def _interrupt_after_the_send(client: aether.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    if client.transport == "mapping":
        mapped = client._mapped
        assert mapped is not None
        # The request ring's put returns once the frame is published.
        monkeypatch.setattr(mapped, "writer", _PutThenInterrupt(mapped.writer))
    else:
        assert client.channel is not None
        monkeypatch.setattr(client.channel, "send", _raise_once_after(client.channel.send))


def _interrupt_after_the_reply_arrived(client: aether.Client,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if client.transport == "mapping":
        mapped = client._mapped
        assert mapped is not None
        # reply_soon has polled the reply frame from the ring when it returns.
        monkeypatch.setattr(mapped, "reply_soon", _raise_once_after(mapped.reply_soon))
    else:
        assert client.channel is not None
        monkeypatch.setattr(client.channel, "recv", _raise_once_after(client.channel.recv))


@pytest.mark.parametrize("where", ["after-the-send", "after-the-reply-arrived"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_call_ever_gets_the_reply_of_an_interrupted_one(
        svc: ServiceProcess, transport: str, where: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The interrupt lands where the session's state is in doubt: the
    interrupted call's reply (5) must never come back as the next call's
    result, and the next call must not hang on a reply already taken."""
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        assert client.call(sp.Add(a=1, b=1)) == 2
        if where == "after-the-send":
            _interrupt_after_the_send(client, monkeypatch)
        else:
            _interrupt_after_the_reply_arrived(client, monkeypatch)
        with pytest.raises(Interrupted):
            client.call(sp.Add(a=2, b=3))
        assert client.in_flight is None
        assert client.call(sp.Add(a=100, b=200), timeout=10) == 300
        assert client.call(sp.Add(a=3, b=4), timeout=10) == 7


def test_blocks_of_a_session_closed_mid_operation_are_never_mapped_again(
        svc: ServiceProcess, tmp_path: Path) -> None:
    """Closed while its operation still runs, a memory-transport session's
    blocks keep their addresses (``PrivateBlock.retire``): the service's late
    write of that operation's result cannot land in a later session's blocks
    (or anything else this process maps afterwards)."""
    params = _hold(tmp_path)
    first = aether.Client(svc.socket_path, schema=sp, transport="memory")
    with pytest.raises(AetherTimeoutError):
        first.call(params, timeout=0.5)
    assert first.memory is not None
    old = [(b.address, b.size) for b in (first.memory.param, first.memory.retn)]
    first.close()  # the operation still runs in the service
    with aether.Client(svc.socket_path, schema=sp, transport="memory") as second:
        assert second.memory is not None
        for block in (second.memory.param, second.memory.retn):
            start, end = block.address, block.address + block.size
            for address, size in old:
                assert not (start < address + size and address < end), \
                    "a new block took the addresses of a block the service may still write"
        Path(params.release).touch()  # now the old session writes its result and ends
        wait_until(lambda: _sessions(svc) == 1, 10, "the old session to end",
                   watch_pid=svc.pid)
        assert second.call(sp.Add(a=1, b=2)) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_interrupt_while_the_operation_is_built_frees_the_session(
        svc: ServiceProcess, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """General path: the interrupt lands as the ``Operation`` is built, after
    the op id was taken and before the request went out."""
    import aether.client.client as client_module

    real = client_module.Operation
    raised: list[bool] = []

    def interrupted_once(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(True)
            raise Interrupted
        return real(*args, **kwargs)

    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        monkeypatch.setattr(client_module, "Operation", interrupted_once)
        with pytest.raises(Interrupted):
            client.call(sp.Add(a=2, b=3), on_progress=lambda op: None)
        assert raised
        assert client.call(sp.Add(a=100, b=200), timeout=10) == 300
        assert client.call(sp.Add(a=3, b=4), on_progress=lambda op: None, timeout=10) == 7


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_interrupt_as_the_general_path_takes_over_ends_the_session(
        svc: ServiceProcess, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short path has taken a reply that is not a quick OK (a failure) and
    hands it to the general path; the interrupt lands as that begins. The
    reply is already taken, so waiting for it again would wait forever."""
    with aether.Client(svc.socket_path, schema=sp, transport=transport) as client:
        name = "_drive_mapped" if transport == "mapping" else "_drive"
        real = getattr(client, name)
        raised: list[bool] = []

        def interrupted_once(*args: Any, **kwargs: Any) -> Any:
            if not raised:
                raised.append(True)
                raise Interrupted  # as at the entry of the real one
            return real(*args, **kwargs)

        monkeypatch.setattr(client, name, interrupted_once)
        with pytest.raises(Interrupted):
            client.call(sp.Fail(message="taken"))
        assert client.in_flight is None
        assert client.call(sp.Add(a=100, b=200), timeout=10) == 300


def test_a_failed_reconnect_after_an_interrupt_is_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "again.ctl"
    service = start_service("shortpath_svc:service", path)
    try:
        with aether.Client(path, schema=sp, transport="socket") as client:
            assert client.channel is not None
            real = client.channel.send

            def interrupted(*args: Any, **kwargs: Any) -> Any:
                real(*args, **kwargs)
                raise Interrupted

            client.channel.send = interrupted  # type: ignore[method-assign]
            with pytest.raises(Interrupted):
                client.call(sp.Add(a=2, b=3))
            service.kill()
            with pytest.raises(aether.AetherError):
                client.call(sp.Add(a=1, b=1), timeout=5)  # no service to reconnect to
            service = start_service("shortpath_svc:service", path)
            assert client.call(sp.Add(a=100, b=200), timeout=10) == 300
    finally:
        service.kill()
