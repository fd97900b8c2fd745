"""``aether bench`` from the command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aether.testing import python_env


def aether(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aether", *args], capture_output=True,
                          text=True, env=python_env(), timeout=timeout)


def test_default_suite_quick_json_and_plot(tmp_path: Path) -> None:
    import importlib.util

    out, png = tmp_path / "b.json", tmp_path / "b.png"
    plot = importlib.util.find_spec("matplotlib") is not None
    r = aether("bench", "--quick", "--only", "floor.eventfd", "--only", "floor.memcpy",
               "--json", str(out), *(["--plot", str(png)] if plot else []))
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    mechs = {row["mechanism"] for row in doc["results"]}
    assert mechs == {"floor.eventfd", "floor.memcpy"}
    assert "echo round trip, unpinned" in r.stdout and "vs memcpy" in r.stdout
    assert "goals (issue 4)" in r.stdout
    assert doc["wall_s"] > 0
    if plot:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_mechanism_is_a_usage_error() -> None:
    r = aether("bench", "--only", "carrier.pigeon")
    assert r.returncode == 2 and "carrier.pigeon" in r.stderr


def test_registry_lists_the_suites() -> None:
    r = aether("bench", "--help")
    assert r.returncode == 0 and "primitives" in r.stdout and "run" in r.stdout
    from aether.cli.bench_cmd import SUITES

    assert SUITES["primitives"] == "aether.bench.primitives_cli:primitives"
