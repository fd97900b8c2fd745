"""The service shortens the GIL's switch interval while it serves (Limits.gil_switch_interval):
one busy session must not hold every other session's reply for Python's 5 ms default."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aether


@contextmanager
def serving(svc: aether.Service, path: Path) -> Iterator[None]:
    ready = threading.Event()
    thread = threading.Thread(
        target=svc.serve, args=(path,),
        kwargs={"install_signal_handlers": False, "on_ready": lambda _p: ready.set()},
        daemon=True)
    thread.start()
    try:
        assert ready.wait(20), "service did not start"
        yield
    finally:
        svc.stop()
        thread.join(20)
        assert not thread.is_alive()


def test_switch_interval_is_set_while_serving_and_restored_after(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    svc = aether.Service("switch", limits=aether.Limits(gil_switch_interval=0.00025))
    with serving(svc, tmp_path / "s.ctl"):
        assert sys.getswitchinterval() == 0.00025
    assert sys.getswitchinterval() == before


def test_default_is_half_a_millisecond() -> None:
    assert aether.Limits().gil_switch_interval == 0.0005


def test_none_leaves_python_s_interval(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    svc = aether.Service("switch", limits=aether.Limits(gil_switch_interval=None))
    with serving(svc, tmp_path / "s.ctl"):
        assert sys.getswitchinterval() == before
