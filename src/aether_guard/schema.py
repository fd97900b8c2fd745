"""Aether Guard's operations: the seed's "separate library" of shared
structures, imported by the service, the CLI and the GUI alike."""

from __future__ import annotations

from typing import Literal

import msgspec

import aether


class FileDigest(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # relative to the root that was hashed
    size: int
    digest: str  # hex


class FileProblem(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    reason: str


class TreeDigest(msgspec.Struct, frozen=True, kw_only=True):
    root: str
    algorithm: str
    files: list[FileDigest]
    problems: list[FileProblem] = []
    total_bytes: int = 0
    elapsed_s: float = 0.0


@aether.operation(code=0x0101, name="guard.hash_tree", result=TreeDigest, idempotent=True,
                  privileged=True)
class HashTree(aether.Params, frozen=True, kw_only=True):
    """Hash every regular file under a directory and return the digests.

    Privileged: the service reads files with its own rights (root for the
    system service), so only the policy's privileged callers may name a tree.

    Symlinks are not followed; unreadable and special files are reported as
    problems, never fatal. Reports progress per file; honours cancel.
    """

    root: str
    algorithm: Literal["sha256", "blake2b"] = "sha256"
    max_files: int = 100_000
