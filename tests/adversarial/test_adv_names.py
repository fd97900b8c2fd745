"""Names, paths and permissions (threats T31-T34, T36, T38, T39, T44).

- the control socket: a user service's socket is 0600 in a 0700 directory,
  so another uid cannot even connect (T33); the service will not bind in a
  symlinked or foreign directory, over a file it did not create, or over a
  live service's socket (T31, the .NET "unlink and rebind" hijack);
- no abstract sockets anywhere, on either side (T32); nothing in /dev/shm
  (T34, T36);
- named objects of ``aether.primitives`` belong to their user: another uid
  cannot open a mapping, write to a mailslot or read an atom table of
  another user, even when it points its runtime directory at the victim's
  (T38, T39, T44). The victim's objects are unchanged afterwards.

The other uid is a child made by fork that drops to uid 65534 (no exec).
"""

from __future__ import annotations

import os
import socket
import stat

import pytest
from adv_support import NOBODY, Forked

from aether.errors import AetherError, ConnectError
from aether.osapi import drop_privileges
from aether.primitives.atoms import GlobalAtomTable
from aether.primitives.mailslots import Mailslot
from aether.primitives.mapping import FileMapping
from aether.service.listener import bind_control_socket

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to use a second uid")


def _as_other_uid(body, env: dict[str, str] | None = None):
    def run(chan):
        if env is not None:
            os.environ.update(env)
        drop_privileges(NOBODY)
        return body()

    child = Forked(run)
    try:
        return child.result()
    finally:
        child.close()


# -- T33: who may connect ---------------------------------------------------------------------
@needs_root
def test_user_service_socket_refuses_another_uid(svc):
    st = os.stat(svc.path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(os.stat(svc.path.parent).st_mode) == 0o700

    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(svc.path))
            return "connected"
        except PermissionError:
            return "EACCES"
        finally:
            s.close()

    assert _as_other_uid(connect) == "EACCES"
    svc.assert_serving()


# -- T31: binding the control socket safely --------------------------------------------------
@needs_root
@pytest.mark.parametrize("case", ["symlinked_dir", "foreign_dir", "foreign_file",
                                  "own_regular_file"])
def test_service_will_not_bind_where_it_could_be_hijacked(tmp_path, case):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    directory = real
    if case == "symlinked_dir":
        directory = tmp_path / "link"
        directory.symlink_to(real)
    elif case == "foreign_dir":
        os.chown(real, NOBODY, NOBODY)
    path = directory / "svc.ctl"
    if case in ("foreign_file", "own_regular_file"):
        path.write_bytes(b"precious")
        if case == "foreign_file":
            os.chown(path, NOBODY, NOBODY)
    with pytest.raises(ConnectError):
        bind_control_socket(path).close()
    if case in ("foreign_file", "own_regular_file"):
        assert path.read_bytes() == b"precious"  # never unlinked
    else:
        assert not (real / "svc.ctl").exists()


def test_second_service_never_takes_over_a_live_socket(svc):
    inode = os.stat(svc.path).st_ino
    with pytest.raises(ConnectError, match="already listening"):
        bind_control_socket(svc.path).close()
    assert os.stat(svc.path).st_ino == inode  # not unlinked and rebound
    svc.assert_serving()


def test_stale_socket_of_a_dead_service_is_replaced(tmp_path):
    """The other side of the rule: a socket nobody answers on is ours to replace."""
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "svc.ctl"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(str(path))
    dead.close()
    sock = bind_control_socket(path)
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        sock.close()


# -- T32, T34, T36: no abstract sockets, nothing in /dev/shm --------------------------------
def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _unix_names(inodes: set[int]) -> list[str]:
    names = []
    with open("/proc/net/unix", encoding="ascii", errors="replace") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if int(fields[6]) in inodes and len(fields) > 7:
                names.append(fields[7])
    return names


def _shm_refs(pid: int) -> list[str]:
    refs = []
    with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as fh:
        refs += [line for line in fh if "/dev/shm" in line]
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/shm"):
            refs.append(target)
    return refs


def test_no_abstract_sockets_and_nothing_in_dev_shm(svc):
    with svc.client() as client:
        assert client.echo(b"x") == b"x"
        for pid in (svc.pid, os.getpid()):
            names = _unix_names(_socket_inodes(pid))
            assert not [n for n in names if n.startswith("@")], names
            assert not _shm_refs(pid), _shm_refs(pid)
        assert str(svc.path) in _unix_names(_socket_inodes(svc.pid))
    svc.assert_serving()


# -- T38, T39, T44: named objects of another user ----------------------------------------------
@needs_root
def test_another_user_cannot_reach_named_objects(runtime_dir):
    env = {"AETHER_RUNTIME_DIR": str(runtime_dir)}  # the attacker aims at the victim's
    secret = b"root's secret bytes"
    with FileMapping.create("Local\\adv-secret", 4096) as local, \
            FileMapping.create("Global\\adv-private", 4096, mode=0o600) as glob, \
            Mailslot.create("\\\\.\\mailslot\\adv\\victim", read_timeout=0) as slot, \
            GlobalAtomTable() as atoms:
        for mapping in (local, glob):
            with mapping.map_view() as view:
                view[: len(secret)] = secret
        atom = atoms.add("victim-atom")

        def attack():
            from aether.primitives.mailslots import open_mailslot

            out = {}
            for key, call in {
                "local_mapping": lambda: FileMapping.open("Local\\adv-secret"),
                "global_mapping": lambda: FileMapping.open("Global\\adv-private"),
                "mailslot": lambda: open_mailslot("\\\\.\\mailslot\\adv\\victim"),
                "atom_table": lambda: GlobalAtomTable().get_name(atom),
            }.items():
                try:
                    got = call()
                    out[key] = f"opened {got!r}"
                except AetherError as exc:
                    out[key] = type(exc).__name__
                except PermissionError as exc:
                    out[key] = f"PermissionError {exc.errno}"
            # and raw: the files behind them
            for dirpath, _dirs, files in os.walk(runtime_dir):
                for name in files:
                    try:
                        with open(os.path.join(dirpath, name), "rb") as fh:
                            fh.read(1)
                        out.setdefault("readable", []).append(os.path.join(dirpath, name))
                    except OSError:
                        pass
            return out

        out = _as_other_uid(attack, env)
        assert not any(str(v).startswith("opened") for v in out.values()), out
        assert "readable" not in out, out
        for mapping in (local, glob):
            with mapping.map_view() as view:
                assert bytes(view[: len(secret)]) == secret
        assert slot.info().message_count == 0
        assert atoms.get_name(atom) == "victim-atom"


def test_client_never_uses_an_abstract_address_for_a_name():
    """A service name never resolves to an abstract socket (T32): resolution
    yields filesystem paths only, and a name with '@' or a NUL is refused."""
    from aether.client.discovery import resolve

    for bad in ("@guard", "gu\0ard", ""):
        with pytest.raises(ConnectError):
            resolve(bad)
