"""Walking the policy's trees and examining every entry, in parallel.

The walk is a lazy depth-first ``os.scandir`` over bytes paths (no name
decoding, no list of the whole tree in memory). The walking thread examines
each entry itself (a small file costs five system calls and a few microseconds
of Python, less than handing it to another thread); files of more than
``LARGE`` bytes go to a thread pool, where reads and hashlib release the GIL,
so large files hash on all cores while the walk goes on.

A regular file is opened with ``O_NOFOLLOW`` and its attributes come from
``fstat`` on the open descriptor before and after reading: if they differ
the file changed while it was read, so it is read again (up to
``RETRIES`` times) and otherwise recorded as "changed during the scan" with
no digest, never with a digest of content that never existed as a whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from .policy import GuardPolicy, PathRule

CHUNK = 1 << 20
LARGE = 1 << 20  # files above this are hashed on the pool
RETRIES = 3
SMALL = 1 << 16  # files up to this size are read with one call, not streamed
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOATIME_FLAGS = _OPEN_FLAGS | getattr(os, "O_NOATIME", 0)
_SHA256 = ("sha256",)
_local = threading.local()


class Entry(NamedTuple):
    """One examined entry, in the column order of the ``entries`` table."""

    path: bytes
    type: str
    size: int | None
    mode: int | None
    uid: int | None
    gid: int | None
    mtime: int | None
    ctime: int | None
    inode: int | None
    target: bytes | None
    sha256: str | None
    blake2b: str | None
    problem: str | None


_TYPES = (
    (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "chardev"),
    (stat.S_ISBLK, "blockdev"),
)


def file_type(mode: int) -> str:
    for test, name in _TYPES:
        if test(mode):
            return name
    return "unknown"


def _buffer() -> bytearray:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(CHUNK)
    return buf


def _entry(path: bytes, st: os.stat_result, *, target: bytes | None = None,
           sha: str | None = None, b2: str | None = None, problem: str | None = None) -> Entry:
    return Entry(path, file_type(st.st_mode), st.st_size, st.st_mode, st.st_uid, st.st_gid,
                 st.st_mtime_ns, st.st_ctime_ns, st.st_ino, target, sha, b2, problem)


class Stopped(Exception):
    """The scan was cancelled while a file was being read."""


class Large(Exception):
    """A regular file too large to read inline: hash it on the pool."""


def _never() -> bool:
    return False


def _new_hashes(hashes: tuple[str, ...]) -> list[Any]:
    return [hashlib.sha256() if h == "sha256" else hashlib.blake2b() for h in hashes]


def _digests(hs: list[Any], hashes: tuple[str, ...]) -> tuple[str | None, str | None]:
    sha = b2 = None
    for name, h in zip(hashes, hs, strict=True):
        if name == "sha256":
            sha = h.hexdigest()
        else:
            b2 = h.hexdigest()
    return sha, b2


def _hash_fd(fd: int, hashes: tuple[str, ...], stop: Callable[[], bool] = _never
             ) -> tuple[str | None, str | None, int]:
    """Stream ``fd`` from its current offset to end of file through the digests."""
    hs = _new_hashes(hashes)
    buf = _buffer()
    view = memoryview(buf)
    total = 0
    while True:
        n = os.readv(fd, [buf])
        if n <= 0:
            break
        if stop():
            raise Stopped()
        total += n
        chunk = view[:n]
        for h in hs:
            h.update(chunk)
    sha, b2 = _digests(hs, hashes)
    return sha, b2, total


def _hash_small(fd: int, size: int, hashes: tuple[str, ...]
                ) -> tuple[str | None, str | None] | None:
    """Digests of a file of ``size`` (at most SMALL) bytes read with one call,
    or None if that call did not return exactly ``size`` bytes (the file grew
    or shrank, or a short read): the caller then streams it from the start.
    Asking for one byte more than ``size`` tells end of file without a second
    read; a file that grows after this read is caught by the ``fstat`` after."""
    data = os.read(fd, size + 1)
    if len(data) != size:
        return None
    if hashes == _SHA256:
        return hashlib.sha256(data).hexdigest(), None
    hs = _new_hashes(hashes)
    for h in hs:
        h.update(data)
    return _digests(hs, hashes)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "vanished during the scan"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"unreadable: {exc.strerror}"
    return exc.strerror or str(exc)


def examine(path: bytes, hashes: tuple[str, ...], regular_hint: bool = False,
            stop: Callable[[], bool] = _never, inline_limit: int | None = None) -> Entry:
    """Attributes (and digests) of one entry; problems are recorded, never
    raised (only :class:`Stopped`, once ``stop()`` is true, and :class:`Large`
    for a regular file of more than ``inline_limit`` bytes, left unread)."""
    if regular_hint and hashes:
        entry = _examine_regular(path, hashes, stop, inline_limit)
        if entry is not None:
            return entry
    try:
        st = os.lstat(path)
    except OSError as exc:
        return Entry(path, "unknown", None, None, None, None, None, None, None, None, None, None,
                     _reason(exc))
    mode = st.st_mode
    if stat.S_ISREG(mode):
        if not hashes:
            return _entry(path, st)
        entry = _examine_regular(path, hashes, stop, inline_limit)
        return entry if entry is not None else _entry(path, st, problem="changed type during "
                                                       "the scan")
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(path)
        except OSError as exc:
            return _entry(path, st, problem=_reason(exc))
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return _entry(path, st, target=target, problem="symlink loop")
        return _entry(path, st, target=target)
    if stat.S_ISDIR(mode):
        return _entry(path, st)
    return _entry(path, st)  # special file: attributes only, content is not read


def _open(path: bytes) -> int:
    try:
        return os.open(path, _NOATIME_FLAGS)
    except PermissionError:
        if _NOATIME_FLAGS == _OPEN_FLAGS:
            raise
    # O_NOATIME needs ownership or CAP_FOWNER: without it, for this file only.
    return os.open(path, _OPEN_FLAGS)


def _examine_regular(path: bytes, hashes: tuple[str, ...], stop: Callable[[], bool] = _never,
                     inline_limit: int | None = None) -> Entry | None:
    """None if ``path`` is not a regular file (any more)."""
    last: os.stat_result | None = None
    for _attempt in range(RETRIES):
        try:
            fd = _open(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # a symlink now: lstat decides
            return _unreadable(path, exc)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return None
            size = before.st_size
            if inline_limit is not None and size > inline_limit:
                raise Large()
            try:
                digests = _hash_small(fd, size, hashes) if size <= SMALL else None
                if digests is None:
                    if size <= SMALL:
                        os.lseek(fd, 0, os.SEEK_SET)
                    sha, b2, size = _hash_fd(fd, hashes, stop)
                else:
                    sha, b2 = digests
            except OSError as exc:
                return _entry(path, before, problem=_reason(exc))
            after = os.fstat(fd)
        finally:
            os.close(fd)
        # Timestamps are as coarse as the kernel's tick: a truncate-and-rewrite
        # within one tick keeps them, but not the length that was read.
        if (size == after.st_size == before.st_size and after.st_mtime_ns == before.st_mtime_ns
                and after.st_ctime_ns == before.st_ctime_ns and after.st_ino == before.st_ino):
            return Entry(path, "file", size, after.st_mode, after.st_uid, after.st_gid,
                         after.st_mtime_ns, after.st_ctime_ns, after.st_ino, None, sha, b2, None)
        last = after
    assert last is not None
    return _entry(path, last, problem="changed during the scan")


def _unreadable(path: bytes, exc: OSError) -> Entry:
    try:
        st = os.lstat(path)
    except OSError:
        return Entry(path, "unknown", None, None, None, None, None, None, None, None, None, None,
                     _reason(exc))
    return _entry(path, st, problem=_reason(exc))


SPECIAL = frozenset({"fifo", "socket", "chardev", "blockdev", "unknown"})


def hashes_for(rule: PathRule) -> tuple[str, ...]:
    return tuple(a for a in ("sha256", "blake2b") if a in rule.attributes)


def walk(policy: GuardPolicy, stop: Callable[[], bool]) -> Iterator[tuple[bytes, PathRule, bool]]:
    """Yield ``(path, rule, looks_regular)`` for every entry of every policy tree,
    depth first, each directory's names sorted; excluded entries and the
    roots of other, nested rules are skipped."""
    roots = {os.fsencode(r.path) for r in policy.paths}
    for rule in policy.paths:
        root = os.fsencode(rule.path)
        if rule.excluded(rule.path):
            continue
        yield root, rule, False
        visited: set[tuple[int, int]] = set()
        stack: list[bytes] = [root]
        while stack:
            if stop():
                return
            directory = stack.pop()
            try:
                st = os.stat(directory, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    continue  # a bind-mount loop
                visited.add(key)
                with os.scandir(directory) as it:
                    children = sorted(it, key=lambda e: e.name)
            except OSError:
                continue  # the directory's own entry carries the problem
            subdirs: list[bytes] = []
            for child in children:
                path = child.path
                if path in roots or (rule.exclude and rule.excluded(os.fsdecode(path))):
                    continue
                try:
                    is_dir = child.is_dir(follow_symlinks=False)
                    is_reg = child.is_file(follow_symlinks=False)
                except OSError:
                    is_dir = is_reg = False
                yield path, rule, is_reg
                if is_dir:
                    subdirs.append(path)
            stack.extend(reversed(subdirs))


class Scanner:
    """Examines the entries ``walk`` yields.

    Small files cost mostly Python and system calls, not hashing: handing each
    to a worker thread costs more than it saves (measured: the walker and the
    workers then fight over the GIL and the walker's own system calls wait
    milliseconds for it), so the walking thread examines entries itself and
    only files of more than ``LARGE`` bytes go to the pool, where reading and
    hashing run without the GIL, in parallel with the walk. Entries come out
    in walk order except large files, which come out when hashed (at most
    ``2 * hash_workers`` in flight).
    """

    def __init__(self, policy: GuardPolicy, stop: Callable[[], bool]) -> None:
        self.policy = policy
        self.stop = stop
        self.discovered = 0
        self.bytes = 0

    def __iter__(self) -> Iterator[tuple[Entry, PathRule]]:
        stop = self.stop
        workers = self.policy.hash_workers
        limit = 2 * workers
        pending: deque[tuple[Future[Entry], PathRule]] = deque()
        hash_cache: dict[int, tuple[str, ...]] = {}
        with ThreadPoolExecutor(workers, thread_name_prefix="guard-hash") as pool:
            try:
                for path, rule, regular in walk(self.policy, stop):
                    self.discovered += 1
                    hashes = hash_cache.get(id(rule))
                    if hashes is None:
                        hashes = hash_cache[id(rule)] = hashes_for(rule)
                    try:
                        entry = examine(path, hashes, regular, stop, LARGE)
                    except Large:
                        pending.append((pool.submit(examine, path, hashes, True, stop), rule))
                        while len(pending) > limit:
                            yield self._finish(*pending.popleft())
                    else:
                        if entry.sha256 is not None or entry.blake2b is not None:
                            self.bytes += entry.size or 0
                        yield entry, rule
                    while pending and pending[0][0].done():
                        yield self._finish(*pending.popleft())
                while pending:
                    yield self._finish(*pending.popleft())
            finally:
                for future, _ in pending:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, future: Future[Entry], rule: PathRule) -> tuple[Entry, PathRule]:
        entry = future.result()
        if entry.sha256 is not None or entry.blake2b is not None:
            self.bytes += entry.size or 0
        return entry, rule
