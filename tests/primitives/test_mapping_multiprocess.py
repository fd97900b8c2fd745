"""File mappings across real processes (ref 2.39, 2.41-2.43 and the lease
protocol of ``_mapping_store``).

Children are ``python -c`` scripts that talk over stdin/stdout lines; every
wait has a timeout and nothing synchronises by sleeping. Only processes
started here are killed, by their own Popen handle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.primitives.mapping import (
    GRANULARITY,
    Access,
    FileMapping,
    MappingNotFoundError,
)
from aether.testing.child import ScriptedChild

TIMEOUT = 20.0

HOLDER = textwrap.dedent(
    """
    import sys
    from aether.primitives.mapping import FileMapping
    mode, name = sys.argv[1], sys.argv[2]
    if mode == "create":
        m = FileMapping.create(name, size=int(sys.argv[3]))
    else:
        m = FileMapping.open(name)
    v = m.map_view()
    if mode == "create":
        v[0:8] = b"creator!"
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "read":
            off, n = int(cmd[1]), int(cmd[2])
            print(bytes(v[off:off + n]).hex(), flush=True)
        elif cmd[0] == "write":
            off, data = int(cmd[1]), bytes.fromhex(cmd[2])
            v[off:off + len(data)] = data
            print("ok", flush=True)
        elif cmd[0] == "exit-without-close":
            import os
            os._exit(0)
        elif cmd[0] == "close":
            m.close(); v.close()
            print("closed", flush=True)
            break
    """
)

RACER = textwrap.dedent(
    """
    import sys
    from aether.primitives.mapping import FileMapping
    name, rounds = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    created = 0
    for _ in range(rounds):
        with FileMapping.open_or_create(name, size=65536) as m:
            assert m.size == 65536, m.size
            created += m.created
            with m.map_view() as v:
                v[0] = (v[0] + 1) % 256
    print("done", created, flush=True)
    """
)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


class Child(ScriptedChild):
    def __init__(self, script: str, *args: str) -> None:
        super().__init__(script, *args, timeout=TIMEOUT)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def spawn(children: list[Child], script: str, *args: str) -> Child:
    child = Child(script, *args)
    children.append(child)
    assert child.line() == "ready"
    return child


def records(runtime_dir: Path) -> list[str]:
    directory = runtime_dir / "mappings"
    return os.listdir(directory) if directory.exists() else []


def test_written_in_one_process_read_in_another(children: list[Child]) -> None:
    # ref 2.5 item 39: views are coherent across processes
    creator = spawn(children, HOLDER, "create", "Local\\xproc", str(2 * GRANULARITY))
    with FileMapping.open("Local\\xproc", Access.ALL) as m, m.map_view() as v:
        assert v[0:8] == b"creator!"
        v[GRANULARITY:GRANULARITY + 6] = b"parent"
        assert creator.send(f"read {GRANULARITY} 6") == b"parent".hex()
        assert creator.send(f"write 100 {b'child'.hex()}") == "ok"
        assert v[100:105] == b"child"
    assert creator.send("close") == "closed"
    assert creator.wait() == 0


def test_name_gone_after_sigkill_of_last_holder(children: list[Child], runtime_dir: Path) -> None:
    # ref 2.6 items 42-43: the name dies with its last holder, even by SIGKILL
    creator = spawn(children, HOLDER, "create", "Local\\victim", str(GRANULARITY))
    opener = spawn(children, HOLDER, "open", "Local\\victim")
    with FileMapping.open("Local\\victim", Access.READ) as m:
        view = m.map_view(Access.READ)
    creator.kill()
    with FileMapping.open("Local\\victim", Access.READ) as m:  # opener still holds it
        assert m.size == GRANULARITY
    opener.kill()
    with pytest.raises(MappingNotFoundError):
        FileMapping.open("Local\\victim")
    assert records(runtime_dir) == []
    assert view[0:8] == b"creator!"  # ref 2.6 item 41: the view outlives every holder
    view.close()


def test_name_gone_after_exit_without_close(children: list[Child], runtime_dir: Path) -> None:
    # ref 2.6 item 43: handles close at process exit
    creator = spawn(children, HOLDER, "create", "Local\\exit", str(GRANULARITY))
    creator.post("exit-without-close")
    assert creator.wait() == 0
    with pytest.raises(MappingNotFoundError):
        FileMapping.open("Local\\exit")
    assert records(runtime_dir) == []


def test_recreate_after_holder_killed(children: list[Child]) -> None:
    # ref 2.6 item 42: the name is free again; a create makes a distinct object
    creator = spawn(children, HOLDER, "create", "Local\\again", str(GRANULARITY))
    creator.kill()
    with FileMapping.create("Local\\again", size=GRANULARITY) as fresh, fresh.map_view() as v:
        assert fresh.created
        assert v[0:8] == bytes(8)


def test_racing_create_open_close_leaves_no_stale_name(
    children: list[Child], runtime_dir: Path
) -> None:
    # the lease protocol under contention: 4 processes x 150 open_or_create/close
    racers = [spawn(children, RACER, "Local\\race", "150") for _ in range(4)]
    for racer in racers:
        racer.post("go")
    results = [racer.line() for racer in racers]
    assert all(r.startswith("done") for r in results)
    for racer in racers:
        assert racer.wait() == 0
    assert records(runtime_dir) == []


def test_normal_exit_without_close_removes_name(runtime_dir: Path) -> None:
    # ref 2.6 item 43: handles close at exit; the last holder's exit removes
    # the record itself, with nobody opening it afterwards
    code = (
        "from aether.primitives.mapping import FileMapping\n"
        "m = FileMapping.create('Local\\\\atexit', size=4096)\n"
        "v = m.map_view()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)
    assert records(runtime_dir) == []
