"""Helpers for Guard's tests: a real tree, a policy, a real Guard process (a module
with a name no other test directory uses; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import aether
from aether.testing import ServiceProcess
from aether_guard import schema

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, uid drop)")


def policy_text(tree: Path, *, exclude: tuple[str, ...] = (),
                attributes: tuple[str, ...] = schema.DEFAULT_ATTRIBUTES,
                extra: str = "", access: str = "") -> str:
    excl = ", ".join(f'"{e}"' for e in exclude)
    attrs = ", ".join(f'"{a}"' for a in attributes)
    return (f"[guard]\nhash_workers = 2\n{extra}\n"
            f'[[paths]]\npath = "{tree}"\nexclude = [{excl}]\nattributes = [{attrs}]\n\n'
            f"[access]\nprivileged_uids = [0]\n{access}\n")


@dataclass
class GuardEnv:
    """A Guard instance's files: tree, policy, state, runtime (short paths for sockets)."""

    base: Path
    tree: Path
    policy: Path
    state: Path
    runtime: Path
    services: list[ServiceProcess] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.runtime / "guard.ctl"

    @property
    def db(self) -> Path:
        return self.state / "guard.db"

    def env(self) -> dict[str, str]:
        return {"AETHER_RUNTIME_DIR": str(self.runtime), "AETHER_GUARD_POLICY": str(self.policy),
                "AETHER_GUARD_STATE": str(self.state)}

    def start(self, *args: str, **env: str) -> ServiceProcess:
        svc = ServiceProcess("guard", self.socket, args=args, env={**self.env(), **env})
        self.services.append(svc)
        return svc.start()

    def client(self, **kw: object) -> aether.Client:
        return aether.Client(self.socket, schema=schema, **kw)  # type: ignore[arg-type]

    def write_policy(self, **kw: object) -> None:
        self.policy.write_text(policy_text(self.tree, **kw))  # type: ignore[arg-type]

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Read the database directly (read-only), as an auditor would."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


def small_tree(root: Path, files: int = 20) -> None:
    for i in range(files):
        sub = root / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:03d}.txt").write_text(f"file {i}\n" * (i + 1))


def slow_tree(root: Path, small: int = 6000, sparse_gib: int = 16) -> None:
    """``small`` small files (walked first) then sparse files that read back as
    gigabytes of zeros: a baseline spends seconds on them after its first rows."""
    sub = root / "a_small"
    sub.mkdir()
    for i in range(small):
        (sub / f"s{i:05d}").write_bytes(b"x")
    big = root / "z_big"
    big.mkdir()
    for i in range(4):
        with open(big / f"huge{i}.bin", "wb") as fh:
            fh.truncate((sparse_gib << 30) // 4)
