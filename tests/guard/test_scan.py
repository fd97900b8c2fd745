"""The scanner's read paths on real files: one read for small files, streaming
on the walking thread, the hashing pool for large files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from guard_support import policy_text
from hypothesis import given, settings, strategies as st

from aether_guard import scan
from aether_guard.policy import parse_policy

SIZES = (0, 1, 4095, scan.SMALL, scan.SMALL + 1, scan.LARGE, scan.LARGE + 1, 3 * scan.LARGE)


def _content(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def test_every_size_class_gets_both_digests_and_its_attributes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for size in SIZES:
        (tree / f"f{size}").write_bytes(_content(size))
    policy = parse_policy(policy_text(tree, attributes=("sha256", "blake2b", "size", "inode")))
    scanner = scan.Scanner(policy, lambda: False)
    entries = {e.path: e for e, _rule in scanner}
    assert scanner.discovered == len(SIZES) + 1 == len(entries)
    assert entries[os.fsencode(tree)].type == "dir"
    for size in SIZES:
        path = tree / f"f{size}"
        e = entries[os.fsencode(path)]
        data = _content(size)
        assert (e.type, e.size, e.inode, e.problem) == ("file", size, path.stat().st_ino, None)
        assert e.sha256 == hashlib.sha256(data).hexdigest()
        assert e.blake2b == hashlib.blake2b(data).hexdigest()
    assert scanner.bytes == sum(SIZES)


@settings(max_examples=40, deadline=None)
@given(actual=st.integers(0, 3000), expected=st.integers(0, 3000))
def test_one_read_gives_up_unless_the_file_has_the_expected_size(
        tmp_path_factory, actual: int, expected: int) -> None:
    """A file longer or shorter than its fstat said (it changed in between) is
    not hashed from one read: the caller streams it and compares fstat again."""
    path = tmp_path_factory.mktemp("one") / "f"
    data = _content(actual)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = scan._hash_small(fd, expected, ("sha256", "blake2b"))
    finally:
        os.close(fd)
    if actual == expected:
        assert got == (hashlib.sha256(data).hexdigest(), hashlib.blake2b(data).hexdigest())
    else:
        assert got is None


def test_a_large_file_replaced_by_a_symlink_is_examined_as_what_it_is_now(
        tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    big = tree / "big"
    big.write_bytes(_content(scan.LARGE + 1))
    entry = scan.examine(os.fsencode(big), ("sha256",), True)
    assert entry.sha256 == hashlib.sha256(_content(scan.LARGE + 1)).hexdigest()
    big.unlink()
    big.symlink_to("elsewhere")
    entry = scan.examine(os.fsencode(big), ("sha256",), True)
    assert (entry.type, entry.target, entry.sha256) == ("symlink", b"elsewhere", None)
