"""``aether atom``: the global atom table from the shell (ref items of section 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aether.cli.main import EXIT_OTHER, EXIT_USAGE, cli
from aether.primitives.atoms import GlobalAtomTable


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["atom", *args])
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_subcommands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for sub in ("add", "find", "delete", "name", "list"):
        assert sub in out
    for sub in ("add", "find", "delete", "name", "list"):
        code, out, _ = run(sub, "--help")
        assert code == 0 and "--json" in out


def test_add_find_name_delete_cycle(runtime_dir: Path) -> None:  # ref 1.4, 1.17, 1.18
    code, out, _ = run("add", "FooBar", "--json")
    assert code == 0
    first = json.loads(out)
    assert first == {
        "atom": 0xC000,
        "hex": "0xC000",
        "name": "FooBar",
        "refcount": 1,
        "integer": False,
    }
    code, out, _ = run("add", "foobar")
    assert code == 0 and out.startswith("0xC000 (49152)") and "refcount 2" in out
    code, out, _ = run("find", "FOOBAR", "--json")
    assert json.loads(out)["atom"] == 0xC000
    code, out, _ = run("name", "0xc000")
    assert (code, out) == (0, "FooBar\n")
    code, out, _ = run("delete", "49152", "--json")
    assert json.loads(out)["refcount"] == 1 and not json.loads(out)["removed"]
    code, out, _ = run("delete", "0xC000")
    assert code == 0 and "(removed)" in out
    code, _, err = run("find", "foobar")
    assert code == EXIT_OTHER
    assert "no atom named 'foobar'" in err and "ERROR_FILE_NOT_FOUND (2)" in err


def test_atoms_persist_between_commands(runtime_dir: Path) -> None:  # ref 1.35
    env = {**os.environ, "AETHER_RUNTIME_DIR": str(runtime_dir)}
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "aether", "atom", "add", "kept", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert json.loads(proc.stdout)["refcount"] == 2
    with GlobalAtomTable() as table:
        assert table.refcount(table.find("KEPT")) == 2


def test_list(runtime_dir: Path) -> None:
    code, out, _ = run("list")
    assert (code, out) == (0, "(no atoms)\n")
    run("add", "b")
    run("add", "a")
    run("add", "a")
    code, out, _ = run("list", "--json")
    assert [(r["name"], r["refcount"]) for r in json.loads(out)] == [("b", 1), ("a", 2)]
    code, out, _ = run("list")
    assert out.splitlines()[1:] == ["0xC000       1  b", "0xC001       2  a"]


def test_integer_atoms(runtime_dir: Path) -> None:  # ref 1.10, 1.14, 1.16
    _code, out, _ = run("add", "#1234", "--json")
    assert json.loads(out) == {
        "atom": 1234,
        "hex": "0x04D2",
        "name": "#1234",
        "refcount": 1,
        "integer": True,
    }
    assert run("name", "1234")[1] == "#1234\n"
    assert run("list")[1] == "(no atoms)\n"  # ref 1.14: no table entry


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("add", "#0"), "ERROR_INVALID_PARAMETER (87)"),  # ref 1.11
        (("add", "x" * 256), "ERROR_INVALID_PARAMETER (87)"),  # ref 1.3
        (("add", ""), "ERROR_INVALID_NAME (123)"),  # ref 1.8
        (("name", "0xC123"), "ERROR_INVALID_HANDLE (6)"),  # ref 1.21
        (("delete", "0xC123"), "ERROR_INVALID_HANDLE (6)"),  # ref 1.21
    ],
)
def test_errors_are_clear(runtime_dir: Path, args: tuple[str, ...], text: str) -> None:
    code, _, err = run(*args)
    assert code == EXIT_OTHER
    assert err.startswith("aether: error: ") and text in err


@pytest.mark.parametrize("value", ["zz", "0", "0x10000", "1e3"])
def test_bad_atom_numbers_are_usage_errors(runtime_dir: Path, value: str) -> None:
    code, _, err = run("name", value)
    assert code == EXIT_USAGE and "Invalid value for 'ATOM'" in err
