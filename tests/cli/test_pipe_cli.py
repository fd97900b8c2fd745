"""``aether pipe``: the seed's pipe hand-off, end to end (ref 3.8, 3.16, 3.17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aether.cli.main import cli
from aether.cli.pipe_cmd import main as child_main
from aether.primitives.atoms import GlobalAtomTable


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


def test_help() -> None:
    result = CliRunner().invoke(cli, ["pipe", "--help"])
    assert result.exit_code == 0
    for option in ("--via", "--bytes", "--chunk", "--size", "--json"):
        assert option in result.stdout


@pytest.mark.parametrize("via", ["atom", "scm", "inherit"])
def test_demo_streams_through_the_handed_end(runtime_dir: Path, via: str) -> None:
    result = CliRunner().invoke(
        cli, ["pipe", "--via", via, "--bytes", "3000000", "--chunk", "10000", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["via"] == via
    whats = [e["what"] for e in report["events"]]
    assert whats[-1] == "checksums match"
    child_done = [e for e in report["events"] if e["who"] == "child"][-1]
    assert child_done["bytes"] == 3_000_000
    if via == "atom":
        published = next(e for e in report["events"] if "token" in e)
        assert published["token"].startswith("aether.pipe:r:")
        with GlobalAtomTable() as table:
            assert len(table) == 0  # the child consumed the atom


def test_demo_human_output(runtime_dir: Path) -> None:
    env = {**os.environ, "AETHER_RUNTIME_DIR": str(runtime_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "aether", "pipe", "--bytes", "100000", "--size", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[parent] created a pipe") and "buffer 4096 bytes" in lines[0]
    assert any("with pidfd_getfd" in line and line.startswith("[child ]") for line in lines)
    assert "read 100000 bytes, then end of stream" in proc.stdout
    assert lines[-1] == "[parent] checksums match"


def test_child_usage() -> None:
    assert child_main(["--child", "nonsense"]) == 2
