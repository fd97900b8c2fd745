"""The code stays lint-clean and type-clean where the brief requires it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return [found]


def test_ruff_clean():
    result = subprocess.run([*_tool("ruff"), "check", "src", "tests", "scripts"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_clean_on_wire_schema_osapi():
    result = subprocess.run([*_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_layers_import_only_downwards():
    """wire and schema import nothing of aether's but errors and each other;
    osapi imports only errors (DESIGN.md, "Layers and layout"); the GUI
    reaches services only through the client."""
    allowed = {
        "wire": {"aether.errors", "aether.wire"},
        "schema": {"aether.errors", "aether.schema", "aether.wire"},
        "osapi": {"aether.errors", "aether.osapi"},
        # The GUI is a front end of the Client: never the service or transport internals.
        "gui": {"aether.errors", "aether.gui", "aether.client", "aether.schema",
                "aether.wire.codes"},
    }
    import ast

    for layer, ok in allowed.items():
        for path in (ROOT / "src" / "aether" / layer).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    if name == "aether" or name.startswith("aether."):
                        assert any(name == o or name.startswith(o + ".") for o in ok), (
                            f"{path.relative_to(ROOT)} imports {name}"
                        )


def test_no_pickle_anywhere():
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "from pickle" not in text, path
