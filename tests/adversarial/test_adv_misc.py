"""Remaining threats with small, direct tests (T27, T29, T35, T36, T43, T44).

- T29: timeouts are event-loop deadlines, never SIGALRM/setitimer handlers
  (OpenSSH's regreSSHion was an async-signal-unsafe grace-time handler): no
  module of the service, transport or client arms a signal timer, and the
  handshake timeout still fires (tests/hostile/test_hostile_timeout.py).
- T35: the unnamed memory-backed mapping is a memfd sealed against
  shrinking and growing: nobody holding its fd can truncate it under a
  mapper (SIGBUS).
- T36: no module uses ``multiprocessing.shared_memory`` (its 3.11 resource
  tracker unlinks segments others still use).
- T27/T43: a pipe end cannot be taken from another user's process: a forged
  hand-over token naming root's pipe is refused by the kernel
  (``pidfd_getfd`` needs ptrace access), and the forger's table is its own.
- T44: a user cannot create (squat) a ``Global\\`` mapping name.
"""

from __future__ import annotations

import ast
import fcntl
import os
from pathlib import Path

import pytest
from adv_support import NOBODY, Forked

from aether.errors import AccessDeniedError, AetherError
from aether.osapi import drop_privileges
from aether.primitives.mapping import FileMapping
from aether.primitives.pipes import create_pipe

# A child that dropped to another uid cannot import from pyenv's 0700 stdlib:
# load the codec the atom table uses while still root.
"".encode("utf-16-le")
SRC = Path(__file__).resolve().parents[2] / "src" / "aether"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to use a second uid")


def _calls_in(path: Path) -> set[str]:
    """Dotted names called or imported in a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            names.add(f"{node.func.value.id}.{node.func.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in ("SIGALRM", "ITIMER_REAL"):
            names.add(f"{node.value.id}.{node.attr}")
    return names


def _modules_mentioning(*words: str) -> list[Path]:
    """Modules whose text mentions a word (parsed only then: keeps this fast)."""
    return [p for p in SRC.rglob("*.py") if any(w in p.read_text() for w in words)]


def test_no_signal_timers_anywhere_in_aether():
    forbidden = {"signal.alarm", "signal.setitimer", "signal.SIGALRM", "signal.ITIMER_REAL"}
    found = {str(p.relative_to(SRC)): sorted(_calls_in(p) & forbidden)
             for p in _modules_mentioning("alarm", "itimer", "SIGALRM", "ITIMER")}
    assert not {k: v for k, v in found.items() if v}


def test_no_multiprocessing_shared_memory():
    found = {str(p.relative_to(SRC)) for p in _modules_mentioning("shared_memory")
             if any(n.startswith("multiprocessing.shared_memory") for n in _calls_in(p))}
    assert not found


def test_unnamed_memory_mapping_is_sealed_against_truncation():
    with FileMapping.create(None, 8192) as mapping:
        fd = mapping.fileno()
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW, hex(seals)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with mapping.map_view() as view:
            view[:5] = b"alive"
            assert bytes(view[:5]) == b"alive"  # no SIGBUS: the size held


@needs_root
def test_pipe_end_of_another_user_cannot_be_taken():
    import shutil
    import tempfile

    from aether.osapi.pipes import pipe_identity
    from aether.primitives._pipe_handover import PipeToken, take_end
    from aether.primitives.atoms import GlobalAtomTable

    reader, writer = create_pipe()
    with reader, writer:
        dev, ino = pipe_identity(reader.fileno())
        forged = str(PipeToken("r", os.getpid(), reader.fileno(), dev, ino, "00" * 8))
        base = Path(tempfile.mkdtemp(prefix="aether-adv-pipe-"))
        os.chmod(base, 0o755)
        own = base / "nobody-rt"
        own.mkdir(mode=0o700)
        os.chown(own, NOBODY, NOBODY)

        def body(chan):
            os.environ["AETHER_RUNTIME_DIR"] = str(own)
            drop_privileges(NOBODY)
            with GlobalAtomTable() as table:
                atom = table.add(forged)  # the forger's own table: it may write this
                try:
                    end = take_end(atom, table=table)
                    return f"took {end!r}"
                except AccessDeniedError as exc:
                    return f"denied: {exc}"
                except AetherError as exc:
                    return f"{type(exc).__name__}: {exc}"

        child = Forked(body)
        try:
            said = child.result()
        finally:
            child.close()
            shutil.rmtree(base, ignore_errors=True)
        assert said.startswith("denied"), said
        writer.write(b"still ours")
        assert reader.read(10) == b"still ours"


@needs_root
def test_user_cannot_squat_a_global_mapping_name(runtime_dir):
    def body(chan):
        os.environ["AETHER_RUNTIME_DIR"] = str(runtime_dir)
        drop_privileges(NOBODY)
        try:
            FileMapping.create("Global\\adv-squat", 4096)
            return "created"
        except AetherError as exc:
            return type(exc).__name__

    child = Forked(body)
    try:
        said = child.result()
    finally:
        child.close()
    assert said != "created"
    with FileMapping.create("Global\\adv-squat", 4096) as mine:  # the name is still free
        assert mine.created
