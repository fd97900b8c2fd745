"""``guard.hash_tree``: hash a directory tree on request, recording nothing.

Kept from Guard's first cut: the hostile-client tests use it as a long,
cancellable operation with progress.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

import aether
from aether.service import OperationContext

from .policy import GuardPolicy
from .schema import FileDigest, FileProblem, HashTree, TreeDigest

CHUNK = 1 << 20


def _walk(root: str, limit: int) -> tuple[list[str], list[FileProblem]]:
    """Regular files under ``root`` (not following symlinks), sorted."""
    files: list[str] = []
    problems: list[FileProblem] = []

    def onerror(exc: OSError) -> None:
        problems.append(FileProblem(path=os.path.relpath(exc.filename or root, root),
                                    reason=exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError as exc:
                problems.append(FileProblem(path=os.path.relpath(full, root),
                                            reason=exc.strerror or "vanished"))
                continue
            if stat.S_ISREG(st.st_mode):
                files.append(full)
                if len(files) > limit:
                    raise aether.OperationFailed(f"more than {limit} files under {root}",
                                                 limit=limit)
            else:
                kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
                problems.append(FileProblem(path=os.path.relpath(full, root),
                                            reason=f"{kind}, not hashed"))
    return files, problems


def hash_tree(params: HashTree, ctx: OperationContext, policy: GuardPolicy | None) -> TreeDigest:
    started = time.monotonic()
    root = os.path.realpath(params.root)
    if policy is not None and policy.paths and not policy.covers(root):
        raise aether.OperationFailed(f"{params.root} is outside the policy's paths",
                                     path=params.root)
    if not os.path.isdir(root):
        raise aether.OperationFailed(f"{params.root} is not a directory", path=params.root)
    files, problems = _walk(root, params.max_files)
    digests: list[FileDigest] = []
    total = 0
    ctx.progress(0, len(files), f"{len(files)} files to hash")
    for index, path in enumerate(files):
        ctx.check_cancelled()
        rel = os.path.relpath(path, root)
        try:
            h = hashlib.new(params.algorithm)
            size = 0
            # O_NOFOLLOW: a file swapped for a symlink after the walk is refused.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            with os.fdopen(fd, "rb", buffering=0) as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    ctx.check_cancelled()
        except OSError as exc:
            problems.append(FileProblem(path=rel, reason=exc.strerror or str(exc)))
        else:
            digests.append(FileDigest(path=rel, size=size, digest=h.hexdigest()))
            total += size
        ctx.progress(index + 1, len(files), rel)
    return TreeDigest(root=root, algorithm=params.algorithm, files=digests, problems=problems,
                      total_bytes=total, elapsed_s=round(time.monotonic() - started, 6))
