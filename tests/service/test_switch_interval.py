"""The service shortens the GIL's switch interval while it serves (Limits.gil_switch_interval):
one busy session must not hold every other session's reply for Python's 5 ms default."""

from __future__ import annotations

import sys
from pathlib import Path

import aether
from aether.testing.inprocess import serving_in_thread


def test_switch_interval_is_set_while_serving_and_restored_after(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    svc = aether.Service("switch", limits=aether.Limits(gil_switch_interval=0.00025))
    with serving_in_thread(svc, tmp_path / "s.ctl"):
        assert sys.getswitchinterval() == 0.00025
    assert sys.getswitchinterval() == before


def test_default_is_half_a_millisecond() -> None:
    assert aether.Limits().gil_switch_interval == 0.0005


def test_none_leaves_python_s_interval(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    svc = aether.Service("switch", limits=aether.Limits(gil_switch_interval=None))
    with serving_in_thread(svc, tmp_path / "s.ctl"):
        assert sys.getswitchinterval() == before
