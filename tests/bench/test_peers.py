"""The optional peers (pip extra ``bench``, Debian ``dbus``), each measured
for real with small counts; skipped with the reason where not installed."""

from __future__ import annotations

import importlib.util
import os

import pytest

from aether.bench.mechanisms import all_mechanisms, make_payload

PEERS = {m.id: m for m in all_mechanisms()}


def _need(mech_id: str):
    reason = PEERS[mech_id].unavailable()
    if reason is not None:
        pytest.skip(reason)
    return PEERS[mech_id]


@pytest.mark.parametrize("mech_id", ["pyzmq", "iceoryx2.poll", "iceoryx2.blocking",
                                     "dbus-fast", "mp.connection"])
def test_peer_echoes_and_times(mech_id: str) -> None:
    mech = _need(mech_id)
    with mech.session(), mech.serve(None, sink=False, capacity=65536) as served:
        ep = served.connect()
        try:
            for size in (64, 4096):
                ep.check(make_payload(size), sink=False)
                samples = ep.samples(make_payload(size), 5, 30)
                assert len(samples) == 30 and all(s > 0 for s in samples)
        finally:
            ep.close()


@pytest.mark.parametrize("mech_id", ["pyzmq", "iceoryx2.poll", "iceoryx2.blocking"])
def test_peer_bulk_acks(mech_id: str) -> None:
    mech = _need(mech_id)
    size = 1 << 20
    with mech.serve(None, sink=True, capacity=size) as served:
        ep = served.connect()
        try:
            ep.check(make_payload(size), sink=True)
            assert len(ep.samples(make_payload(size), 1, 3)) == 3
        finally:
            ep.close()


def test_private_dbus_daemon_is_killed_by_pid() -> None:
    mech = _need("dbus-fast")
    with mech.serve(None, sink=False, capacity=64) as served:
        pid = served.pid
        assert pid is not None and os.path.exists(f"/proc/{pid}")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"dbus-daemon" in f.read()
    assert not os.path.exists(f"/proc/{pid}") or _zombie_gone(pid)


def test_private_dbus_daemon_is_killed_when_the_server_fails() -> None:
    mech = _need("dbus-fast")
    from aether.bench import dbus_peer

    seen: list[int] = []
    real = dbus_peer.PrivateBus

    class Watched(real):  # type: ignore[misc, valid-type]
        def __init__(self, cpus=None):
            super().__init__(cpus)
            seen.append(self.pid)

    dbus_peer.PrivateBus = Watched
    try:
        with pytest.raises(ZeroDivisionError):
            with mech.serve(None, sink=False, capacity=64):
                raise ZeroDivisionError
    finally:
        dbus_peer.PrivateBus = real
    assert seen and not os.path.exists(f"/proc/{seen[0]}")


def _zombie_gone(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def test_unavailable_reason_names_the_extra() -> None:
    if importlib.util.find_spec("zmq") is not None:
        mech = PEERS["pyzmq"]
        assert mech.unavailable() is None
    else:
        assert "pip install -e '.[bench]'" in (PEERS["pyzmq"].unavailable() or "")
