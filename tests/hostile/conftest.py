"""Shared fixtures of the hostile-peer suite (issue 2, "Hostile and broken peers").

- ``guard``: a real Guard service subprocess (``aether service run guard``),
  one per test module; ``svc`` hands it to a test, restarting it first if an
  earlier test killed it, and afterwards checks it is still alive.
- ``Svc.assert_serving()``: the after-check of every hostile case (b): a
  well-behaved ``aether.Client`` gets ``aether.echo`` answered within 1 s.
- ``Svc.wait_footprint()``: the service's threads and open descriptors are
  back to their idle baseline (nothing of a dead session leaked), polled
  against a deadline.
- ``short``: the same Guard with a 0.5 s handshake timeout
  (``hostile_targets.py``).
- ``spawn_peer``: runs a helper script of ``peers/`` as a child process,
  talking JSON lines over pipes; the finalizer kills (by pid) and reaps it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from hostile_support import Peer, Svc  # noqa: E402

from aether.testing import python_env  # noqa: E402


def _short_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    path = tmp_path_factory.mktemp(name)
    os.chmod(path, 0o700)
    return path


def _service_fixture(svc: Svc) -> Iterator[Svc]:
    """Alive at the start; afterwards still alive (or the test fails),
    nothing leaked, no internal error logged."""
    svc.restart_if_dead()
    svc.new_stderr()
    yield svc
    if not svc.alive():
        pytest.fail("the service died during the test" + svc.stderr_tail())
    log = svc.new_stderr()
    assert "internal error" not in log and "Traceback" not in log, log
    svc.wait_footprint()


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """The Guard service, one per module."""
    svc = Svc("guard", _short_dir(tmp_path_factory, "hg") / "guard.ctl")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def svc(guard: Svc) -> Iterator[Svc]:
    yield from _service_fixture(guard)


@pytest.fixture(scope="module")
def short_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """hostile_targets:service: the Guard with a 0.5 s handshake timeout."""
    env = {"PYTHONPATH": f"{HERE}{os.pathsep}{python_env()['PYTHONPATH']}"}
    svc = Svc("hostile_targets:service", _short_dir(tmp_path_factory, "hs") / "short.ctl",
              env=env)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def short(short_guard: Svc) -> Iterator[Svc]:
    yield from _service_fixture(short_guard)


@pytest.fixture
def spawn_peer() -> Iterator[Any]:
    peers: list[Peer] = []

    def spawn(script: str, *args: str, pass_fds: tuple[int, ...] = ()) -> Peer:
        peer = Peer(script, *args, pass_fds=pass_fds)
        peers.append(peer)
        return peer

    yield spawn
    for peer in peers:
        peer.finish()


@pytest.fixture
def victim(spawn_peer: Any) -> Any:
    """A victim process holding 0x1337D00D blocks at a fixed address that is
    free in this (the attacker's) process; ``.info`` has pid, addresses, hash."""
    from rawpeer import DEFAULT_BLOCK, PAGE, free_address

    size = 3 * PAGE + 2 * DEFAULT_BLOCK
    address = free_address(size)
    peer = spawn_peer("victim.py", hex(address))
    peer.info = peer.read()

    def digest() -> str:
        peer.send("hash")
        return str(peer.read()["hash"])

    peer.digest = digest
    return peer


@pytest.fixture(scope="session")
def slow_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory tree guard.hash_tree would need many seconds for: a sparse
    8 GiB file (instant to create, reads back as zeros) hashed first, then
    small files. Between the first PROGRESS and the end of the big file the
    service writes nothing to the client, so a test decides when the next
    write happens (by CANCEL, or by killing the client)."""
    root = tmp_path_factory.mktemp("tree")
    with open(root / "a_huge.bin", "wb") as fh:
        fh.truncate(8 << 30)
    for d in range(3):
        sub = root / f"sub{d}"
        sub.mkdir()
        for f in range(5):
            (sub / f"file{f}.txt").write_text(f"{d}/{f}\n" * 100)
    return root
