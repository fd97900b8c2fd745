"""The quarantine vault: a directory only the service's uid can enter.

Quarantine records the file's metadata and digest, then renames it into the
vault (the inode, hence content, owner and mode, moves with it; across file
systems it is copied, synced and the original unlinked). Restore moves it
back and re-applies owner, then mode (``chown`` clears set-id bits), then
access and modification times, and checks the digest.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

from aether.service import OperationFailed

from .policy import GuardPolicy
from .schema import VaultEntry
from .store import VAULT_COLUMNS, Store

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK


def ensure_vault(state_dir: Path) -> Path:
    vault = state_dir / "vault"
    vault.mkdir(mode=0o700, exist_ok=True)
    os.chmod(vault, 0o700)
    st = os.lstat(vault)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OperationFailed(f"{vault} is not a directory owned by uid {os.geteuid()}")
    return vault


def _sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, _FLAGS | getattr(os, "O_NOATIME", 0)) if os.geteuid() == 0 \
        else os.open(path, _FLAGS)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _move(src: str | Path, dst: str | Path) -> None:
    """rename(2), or copy + fsync + unlink across file systems."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    shutil.copyfile(src, dst, follow_symlinks=False)
    fd = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(src)


def _target(policy: GuardPolicy, path: str) -> str:
    if not path.startswith("/"):
        raise OperationFailed(f"{path!r} is not an absolute path", path=path)
    norm = os.path.normpath(path)
    if not policy.covers(norm):
        raise OperationFailed(f"{path} is outside the policy's paths", path=path)
    return norm


def quarantine(store: Store, policy: GuardPolicy, vault: Path, path: str,
               caller_uid: int) -> VaultEntry:
    norm = _target(policy, path)
    try:
        st = os.lstat(norm)
    except OSError as exc:
        raise OperationFailed(f"cannot quarantine {path}: {exc.strerror}", path=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise OperationFailed(f"{path} is not a regular file", path=path)
    if os.path.realpath(os.path.dirname(norm)) != os.path.dirname(norm):
        raise OperationFailed(f"{path} is reached through a symlink", path=path)
    try:
        digest = _sha256_file(norm)
    except OSError as exc:
        raise OperationFailed(f"cannot read {path}: {exc.strerror}", path=path) from None
    with store.session() as conn, store.write_lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO vault(path, stored, size, mode, uid, gid, atime_ns, mtime_ns, "
                "sha256, quarantined_at, caller_uid) VALUES (?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (os.fsencode(norm), st.st_size, st.st_mode, st.st_uid, st.st_gid,
                 st.st_atime_ns, st.st_mtime_ns, digest, time.time(), caller_uid))
            entry_id = cur.lastrowid
            stored = f"{entry_id:010d}"
            conn.execute("UPDATE vault SET stored=? WHERE id=?", (stored, entry_id))
            try:
                _move(norm, vault / stored)
            except OSError as exc:
                raise OperationFailed(f"cannot move {path} into the vault: {exc.strerror}",
                                      path=path) from None
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        row = conn.execute(f"SELECT {VAULT_COLUMNS} FROM vault WHERE id=?",
                           (entry_id,)).fetchone()
    return store.vault_entry(row)


def restore(store: Store, policy: GuardPolicy, vault: Path, entry_id: int) -> VaultEntry:
    with store.session() as conn, store.write_lock:
        row = conn.execute(f"SELECT {VAULT_COLUMNS}, stored FROM vault WHERE id=?",
                           (entry_id,)).fetchone()
        if row is None:
            raise OperationFailed(f"no vault entry {entry_id}", entry_id=entry_id)
        entry = store.vault_entry(row[:-1])
        if entry.restored_at is not None:
            raise OperationFailed(f"vault entry {entry_id} was already restored",
                                  entry_id=entry_id)
        path = os.fsdecode(row[1])
        _target(policy, path)
        if os.path.lexists(path):
            raise OperationFailed(f"{entry.path} exists again; move it away first",
                                  path=entry.path)
        stored = vault / row[-1]
        try:
            if _sha256_file(stored) != entry.sha256:
                raise OperationFailed(f"vault copy of {entry.path} does not match its digest",
                                      entry_id=entry_id)
            _move(stored, path)
            os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
            os.chmod(path, stat.S_IMODE(entry.mode))
            os.utime(path, ns=(entry.atime_ns, entry.mtime_ns), follow_symlinks=False)
        except OSError as exc:
            raise OperationFailed(f"cannot restore {entry.path}: {exc.strerror}",
                                  path=entry.path) from None
        conn.execute("UPDATE vault SET restored_at=? WHERE id=?", (time.time(), entry_id))
        row = conn.execute(f"SELECT {VAULT_COLUMNS} FROM vault WHERE id=?",
                           (entry_id,)).fetchone()
    return store.vault_entry(row)
