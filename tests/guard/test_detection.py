"""Checks against real trees: every attribute change, exclusions, problems."""

from __future__ import annotations

import os
import shutil

import pytest
from guard_support import small_tree

import aether
from aether_guard import schema


def _by_path(changes: list[schema.Change]) -> dict[str, schema.Change]:
    return {c.path: c for c in changes}


def _all_findings(client, report_id: int) -> list[schema.Change]:
    out: list[schema.Change] = []
    offset: int | None = 0
    while offset is not None:
        page = client.call(schema.Report(report_id=report_id, offset=offset, limit=3))
        out.extend(page.changes)
        offset = page.next_offset
    return out


def test_every_attribute_change_is_detected(genv):
    tree = genv.tree
    attrs = ("sha256", "blake2b", "size", "mode", "uid", "gid", "mtime", "ctime", "inode",
             "target", "type")
    genv.write_policy(attributes=attrs)
    names = ["content", "size", "mode", "owner", "mtime", "ctime", "inode", "link", "type",
             "gone"]
    for n in names:
        (tree / n).write_bytes(b"original content\n")
    os.symlink("content", tree / "link2")
    os.unlink(tree / "link")
    os.symlink("content", tree / "link")
    genv.start()
    with genv.client() as c:
        c.call(schema.Baseline())
        # content: same size, mtime put back: only the digests (and ctime) tell
        st = (tree / "content").stat()
        (tree / "content").write_bytes(b"ORIGINAL content\n")
        os.utime(tree / "content", ns=(st.st_atime_ns, st.st_mtime_ns))
        with open(tree / "size", "ab") as fh:
            fh.write(b"more")
        os.chmod(tree / "mode", 0o600)
        if os.geteuid() == 0:
            os.chown(tree / "owner", 1234, 5678)
        st = (tree / "mtime").stat()
        os.utime(tree / "mtime", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
        os.link(tree / "ctime", genv.base / "hardlink")  # link count: ctime only
        shutil.copy2(tree / "inode", genv.base / "inode.copy")
        os.replace(genv.base / "inode.copy", tree / "inode")
        os.unlink(tree / "link")
        os.symlink("size", tree / "link")
        os.unlink(tree / "type")
        os.mkdir(tree / "type")
        os.unlink(tree / "gone")
        (tree / "new").write_text("new\n")
        summary = c.call(schema.Check())
        found = _by_path(_all_findings(c, summary.report.report_id))

    def changed(name: str) -> set[str]:
        change = found[str(tree / name)]
        assert change.kind == "changed", change
        return {a.name for a in change.attributes}

    assert {"sha256", "blake2b"} <= changed("content")
    assert "size" not in changed("content") and "mtime" not in changed("content")
    assert {"sha256", "blake2b", "size", "mtime"} <= changed("size")
    assert "mode" in changed("mode")
    mode = next(a for a in found[str(tree / "mode")].attributes if a.name == "mode")
    assert (mode.old, mode.new) == (0o100644, 0o100600)
    if os.geteuid() == 0:
        owner = {a.name: (a.old, a.new) for a in found[str(tree / "owner")].attributes}
        assert owner["uid"][1] == 1234 and owner["gid"][1] == 5678
    assert "mtime" in changed("mtime")
    assert changed("ctime") == {"ctime"}
    assert "inode" in changed("inode") and "sha256" not in changed("inode")
    target = {a.name: (a.old, a.new) for a in found[str(tree / "link")].attributes}
    assert target["target"] == ("content", "size")
    assert "type" in changed("type")
    assert found[str(tree / "gone")].kind == "removed"
    assert found[str(tree / "new")].kind == "added"
    assert str(tree / "link2") not in found
    assert summary.report.removed == 1 and summary.report.added == 1


def test_exclusions_are_honoured(genv):
    (genv.tree / "cache").mkdir()
    (genv.tree / "cache" / "a").write_text("a")
    (genv.tree / "keep.txt").write_text("k")
    genv.write_policy(exclude=("*.tmp", f"{genv.tree}/cache"))
    genv.start()
    with genv.client() as c:
        base = c.call(schema.Baseline())
        (genv.tree / "cache" / "b").write_text("b")  # inside an excluded directory
        (genv.tree / "cache" / "a").write_text("changed")
        (genv.tree / "scratch.tmp").write_text("x")
        (genv.tree / "real.txt").write_text("y")
        report = c.call(schema.Check()).report
        found = _by_path(_all_findings(c, report.report_id))
    paths = {p for p, _ in genv.query("SELECT path, type FROM entries")}
    assert all(b"cache" not in p and not p.endswith(b".tmp") for p in paths)
    assert base.baseline.files == 2  # the root and keep.txt
    assert set(found) == {str(genv.tree), str(genv.tree / "real.txt")}


def test_unreadable_vanished_special_and_loops_are_reported_not_fatal(genv):
    small_tree(genv.tree, 6)
    os.mkfifo(genv.tree / "fifo")
    os.symlink("loop2", genv.tree / "loop1")
    os.symlink("loop1", genv.tree / "loop2")
    genv.start()
    with genv.client() as c:
        summary = c.call(schema.Baseline())
        problems = {os.path.basename(p.path): p.problem for p in summary.problems}
        assert problems["loop1"] == "symlink loop" and problems["fifo"].startswith("special")
        assert summary.baseline.files == 6 + 3 + 1 + 3  # files, dirs, root, fifo+links
        report = c.call(schema.Check()).report
        assert report.problems == 2  # the loops, again; the fifo is only a special file
        assert report.changed == report.added == report.removed == 0


def test_a_path_outside_the_policy_is_refused(genv, tmp_path):
    small_tree(genv.tree, 3)
    outside = tmp_path / "outside.txt"
    outside.write_text("not mine")
    genv.start()
    with genv.client() as c:
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.Quarantine(path=str(outside)))
        assert err.value.status_name == "FAILED" and "outside the policy" in err.value.message
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.Quarantine(path=f"{genv.tree}/../{outside.name}"))
        assert "outside the policy" in err.value.message
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.HashTree(root=str(tmp_path)))
        assert "outside the policy" in err.value.message
    assert outside.read_text() == "not mine"


def test_bad_policy_refuses_to_start_naming_the_line(genv):
    genv.policy.write_text(f'[guard]\nhash_workers = 2\n\n[[paths]]\npath = "{genv.tree}"\n'
                           'attributes = ["sha256", "colour"]\n')
    with pytest.raises(aether.AetherError) as err:
        genv.start()
    assert "line 6" in str(err.value) and "colour" in str(err.value)
    genv.policy.write_text("[guard\n")
    with pytest.raises(aether.AetherError) as err:
        genv.start()
    assert "line 1" in str(err.value)

