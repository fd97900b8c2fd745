"""aether.primitives.mapping in one process: win32-ipc-semantics.md section 2.

Comments cite reference items ("ref 2.13" = section 2, item 13).
Several processes: test_mapping_multiprocess.py. Win32 face: tests/win32.
"""

from __future__ import annotations

import mmap
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from aether.errors import (
    AccessDeniedError,
    ClosedResourceError,
    InvalidNameError,
    InvalidParameterError,
    Win32Error,
)
from aether.osapi import read_maps
from aether.primitives import _mapping_names, _mapping_store
from aether.primitives._mapping_access import (
    FILE_MAP_ALL_ACCESS,
    normalize_open_access,
    view_kind,
)
from aether.primitives.mapping import (
    GRANULARITY,
    Access,
    DiskFullError,
    FileInvalidError,
    FileMapping,
    MappedAlignmentError,
    MappingExistsError,
    MappingName,
    MappingNotFoundError,
    NotEnoughMemoryError,
    Protect,
    query,
    sweep_stale,
)

PAGE = mmap.PAGESIZE


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def named() -> Iterator[FileMapping]:
    with FileMapping.create("Local\\cfg", size=4 * GRANULARITY) as m:
        yield m


def records(runtime_dir: Path, scope: str = "local") -> list[str]:
    base = runtime_dir / "mappings" if scope == "local" else runtime_dir / "global" / "mappings"
    return sorted(os.listdir(base)) if base.exists() else []


# --------------------------------------------------------------------------
# 2.1 CreateFileMapping
# --------------------------------------------------------------------------


class TestCreate:
    def test_memory_mapping_zero_size_fails(self) -> None:
        # ref 2.3 item 3
        with pytest.raises(InvalidParameterError) as info:
            FileMapping.create(size=0)
        assert info.value.win32_code == Win32Error.ERROR_INVALID_PARAMETER

    def test_memory_mapping_starts_zeroed(self) -> None:
        # ref 2.5 item 5
        with FileMapping.create("z", size=3 * PAGE) as m, m.map_view() as v:
            assert bytes(v) == bytes(3 * PAGE)

    def test_memory_size_rounds_to_pages_file_size_exact(self, tmp_path: Path) -> None:
        # ref 2.6 item 6: 0x3457 -> 0x4000; file-backed 36 -> 36
        with FileMapping.create(size=0x3457) as m:
            assert m.size == 0x4000
        path = tmp_path / "f"
        path.write_bytes(b"x" * 100)
        with FileMapping.create(size=36, file=path) as m:
            assert m.size == 36
            with m.map_view() as v:
                assert len(v) == 36

    def test_file_size_zero_means_file_size(self, tmp_path: Path) -> None:
        # ref 2.4 item 4
        path = tmp_path / "f"
        path.write_bytes(b"abcdef")
        with FileMapping.create(file=path, protect=Protect.READONLY) as m:
            assert m.size == 6
            with m.map_view() as v:
                assert bytes(v) == b"abcdef"

    def test_empty_file_with_size_zero_is_file_invalid(self, tmp_path: Path) -> None:
        # ref 2.4 item 4: ERROR_FILE_INVALID (1006)
        path = tmp_path / "empty"
        path.write_bytes(b"")
        with pytest.raises(FileInvalidError) as info:
            FileMapping.create(file=path)
        assert info.value.win32_code == 1006

    def test_writable_mapping_grows_file(self, tmp_path: Path) -> None:
        # ref 2.7 item 7
        path = tmp_path / "f"
        path.write_bytes(b"ab")
        with FileMapping.create(size=3 * PAGE, file=path) as m:
            assert m.size == 3 * PAGE
        assert path.stat().st_size == 3 * PAGE

    def test_readonly_mapping_larger_than_file_fails(self, tmp_path: Path) -> None:
        # ref 2.7 item 7 (STATUS_SECTION_TOO_BIG -> ERROR_NOT_ENOUGH_MEMORY)
        path = tmp_path / "f"
        path.write_bytes(b"ab")
        with pytest.raises(NotEnoughMemoryError) as info:
            FileMapping.create(size=PAGE, file=path, protect=Protect.READONLY)
        assert info.value.win32_code == Win32Error.ERROR_NOT_ENOUGH_MEMORY
        assert path.stat().st_size == 2

    def test_file_that_cannot_grow_is_disk_full(self, tmp_path: Path, runtime_dir: Path) -> None:
        # ref 2.7 item 7: ERROR_DISK_FULL, provoked with RLIMIT_FSIZE in a child
        path = tmp_path / "f"
        path.write_bytes(b"ab")
        code = (
            "import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
            "from aether.primitives.mapping import FileMapping, DiskFullError\n"
            "try:\n"
            f"    FileMapping.create(size=1 << 20, file={str(path)!r})\n"
            "except DiskFullError as e:\n"
            "    print(e.win32_code)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        assert out.stdout.strip() == str(int(Win32Error.ERROR_DISK_FULL))
        assert DiskFullError.default_code == Win32Error.ERROR_DISK_FULL

    @pytest.mark.parametrize("bad", [0x01, 0x00, 0x03, 0x10, 0x100, 0x06])
    def test_invalid_protection(self, bad: int) -> None:
        # ref 2.1 item 9: PAGE_NOACCESS or any other value
        with pytest.raises(InvalidParameterError):
            FileMapping.create(size=PAGE, protect=bad)

    def test_readwrite_file_needs_writable_descriptor(self, tmp_path: Path) -> None:
        # ref 2.1 item 8 (PAGE_READWRITE needs a file open for read and write)
        path = tmp_path / "f"
        path.write_bytes(b"x" * 10)
        with open(path, "rb") as fh:
            with pytest.raises(AccessDeniedError):
                FileMapping.create(file=fh)
            with FileMapping.create(file=fh, protect=Protect.READONLY) as m:
                assert m.size == 10

    def test_size_past_4_gib(self) -> None:
        # ref 2.1 item 2 (64-bit size); memory is sparse until touched
        size = (5 << 30) + PAGE
        with FileMapping.create("big", size=size) as m:
            assert m.size == size
            with m.map_view(offset=4 << 30, size=GRANULARITY) as v:
                v[:4] = b"high"
            with FileMapping.open("big") as other, other.map_view(
                Access.READ, offset=4 << 30, size=GRANULARITY
            ) as v2:
                assert v2[:4] == b"high"

    def test_existing_name_returns_existing_object(self, named: FileMapping) -> None:
        # ref 2.1 item 13: existing object, its current size, "already exists"
        with pytest.raises(MappingExistsError) as info:
            FileMapping.create("Local\\cfg", size=PAGE)
        assert info.value.win32_code == Win32Error.ERROR_ALREADY_EXISTS
        with FileMapping.open_or_create("Local\\cfg", size=PAGE) as again:
            assert not again.created
            assert again.size == named.size == 4 * GRANULARITY
        assert named.created

    def test_existing_name_access_follows_requested_protection(self, named: FileMapping) -> None:
        # ref 2.1 item 17: a PAGE_READONLY request gets read access only
        with FileMapping.open_or_create("Local\\cfg", size=PAGE, protect=Protect.READONLY) as ro:
            assert not ro.created
            assert ro.access == Access.READ
            with pytest.raises(AccessDeniedError):
                ro.map_view(Access.WRITE)

    def test_names_are_case_sensitive(self) -> None:
        # ref 2.1 item 16
        with FileMapping.create("Wine Test Mapping", size=PAGE) as a, FileMapping.create(
            "WINE TEST MAPPING", size=PAGE
        ) as b:
            assert a.created and b.created
            with a.map_view() as va, b.map_view() as vb:
                va[0:1] = b"A"
                assert vb[0:1] == b"\0"


# --------------------------------------------------------------------------
# 2.2 Names and namespaces
# --------------------------------------------------------------------------


class TestNames:
    def test_local_prefix_is_the_default_namespace(self) -> None:
        # ref 2.2 item 19
        with FileMapping.create("Local\\n", size=PAGE) as m:
            with FileMapping.open("n") as same, same.map_view() as v, m.map_view() as w:
                w[0:2] = b"hi"
                assert v[0:2] == b"hi"

    def test_global_and_local_are_distinct(self, runtime_dir: Path) -> None:
        # ref 2.2 item 19
        with FileMapping.create("Global\\n", size=PAGE) as g, FileMapping.create(
            "Local\\n", size=PAGE
        ) as loc:
            assert g.created and loc.created
            assert g.info().scope == "global"
            assert len(records(runtime_dir, "global")) == 1
        assert records(runtime_dir, "global") == []

    def test_prefix_keywords_are_case_sensitive(self) -> None:
        # ref 2.2 item 19: "global\\x" is not the Global namespace
        with pytest.raises(InvalidNameError) as info:
            FileMapping.create("global\\x", size=PAGE)
        assert info.value.win32_code == Win32Error.ERROR_PATH_NOT_FOUND

    def test_session_prefix_is_reserved(self) -> None:
        # ref 2.2 item 19
        with pytest.raises(InvalidNameError):
            FileMapping.create("Session\\1\\x", size=PAGE)

    def test_creating_global_needs_root(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # ref 2.2 item 20: creating needs the privilege, opening does not
        with FileMapping.create("Global\\shared", size=PAGE) as owner:
            monkeypatch.setattr("aether.primitives.mapping.may_create_global", lambda: False)
            with pytest.raises(AccessDeniedError):
                FileMapping.create("Global\\other", size=PAGE)
            with FileMapping.open("Global\\shared", Access.READ) as m:
                assert m.size == owner.size
            with FileMapping.open_or_create("Global\\shared", size=PAGE) as m:
                assert not m.created

    def test_name_length_limit(self) -> None:
        # ref 2.2 item 21: MAX_PATH (260) characters
        with FileMapping.create("n" * 260, size=PAGE) as m:
            assert m.created
        with pytest.raises(InvalidNameError) as info:
            FileMapping.create("n" * 261, size=PAGE)
        assert info.value.win32_code == Win32Error.ERROR_FILENAME_EXCED_RANGE

    @pytest.mark.parametrize("bad", ["", "a\x00b", "Local\\", "Global\\", "a\\b"])
    def test_invalid_names(self, bad: str) -> None:
        with pytest.raises(InvalidNameError):
            MappingName.parse(bad)

    @given(st.text(min_size=1, max_size=260).filter(lambda s: "\\" not in s and "\0" not in s))
    @settings(max_examples=200, deadline=None)
    def test_any_plain_name_is_accepted_and_hashed(self, text: str) -> None:
        # names reach the filesystem only as a digest (T34): no traversal
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            with pytest.raises(InvalidNameError):
                MappingName.parse(text)
            return
        parsed = MappingName.parse(text)
        assert parsed.scope == "local"
        assert parsed.base == text
        stem, _, ext = parsed.key.partition(".")
        assert ext == "map" and len(stem) == 64 and all(c in "0123456789abcdef" for c in stem)

    @given(st.text(max_size=300))
    @settings(max_examples=300, deadline=None)
    def test_parse_accepts_or_raises_invalid_name(self, text: str) -> None:
        try:
            parsed = MappingName.parse(text)
        except InvalidNameError:
            return
        assert 0 < len(parsed.base) <= MappingName.MAX_LEN
        assert "\\" not in parsed.base and "\0" not in parsed.base

    def test_namespace_directory_is_private(self, named: FileMapping, runtime_dir: Path) -> None:
        # threat T34: 0700 directory, 0600 records
        directory = runtime_dir / "mappings"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        (record,) = records(runtime_dir)
        assert stat.S_IMODE((directory / record).stat().st_mode) == 0o600

    def test_symlink_at_record_path_is_not_followed(
        self, runtime_dir: Path, tmp_path: Path
    ) -> None:
        # threat T34/T31: O_NOFOLLOW
        target = tmp_path / "victim"
        target.write_bytes(b"secret" * 1000)
        directory = runtime_dir / "mappings"
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / MappingName.parse("trap").key).symlink_to(target)
        with pytest.raises(AccessDeniedError):
            FileMapping.open("trap")
        assert target.read_bytes() == b"secret" * 1000


# --------------------------------------------------------------------------
# 2.3 OpenFileMapping
# --------------------------------------------------------------------------


class TestOpen:
    def test_missing_name(self) -> None:
        # ref 2.3 item 22
        with pytest.raises(MappingNotFoundError) as info:
            FileMapping.open("nothing-here")
        assert info.value.win32_code == Win32Error.ERROR_FILE_NOT_FOUND

    def test_copy_access_means_read(self, named: FileMapping) -> None:
        # ref 2.3 item 23
        with FileMapping.open("Local\\cfg", Access.COPY) as m:
            assert m.access == Access.READ
            with m.map_view(Access.READ) as v:
                assert not v.writable
            with pytest.raises(AccessDeniedError):
                m.map_view(Access.WRITE)

    def test_query_describes_without_holding(self, named: FileMapping) -> None:
        info = query("Local\\cfg")
        assert info.size == named.size and info.backing == "memory" and not info.created
        assert info.creator_pid == os.getpid()


# --------------------------------------------------------------------------
# 2.4 access checks
# --------------------------------------------------------------------------


class TestAccess:
    def test_read_handle_cannot_map_write(self, named: FileMapping) -> None:
        # ref 2.4 item 25
        with FileMapping.open("Local\\cfg", Access.READ) as m:
            with pytest.raises(AccessDeniedError) as info:
                m.map_view(Access.WRITE)
            assert info.value.win32_code == Win32Error.ERROR_ACCESS_DENIED
            with m.map_view(Access.READ) as v:
                assert v.kind.win32_protect == 0x02  # PAGE_READONLY
                with pytest.raises(TypeError):
                    v[0:1] = b"x"

    def test_write_only_handle_cannot_map_read(self, named: FileMapping) -> None:
        # ref 2.4 item 26: ERROR_ACCESS_DENIED although Linux cannot map write-only
        with FileMapping.open("Local\\cfg", Access.WRITE) as m:
            with pytest.raises(AccessDeniedError):
                m.map_view(Access.READ)
            with m.map_view(Access.WRITE) as v:
                assert v.kind.win32_protect == 0x04  # PAGE_READWRITE
                v[0:1] = b"w"

    def test_access_zero(self, named: FileMapping) -> None:
        # ref 2.4 item 27: handle without rights fails; a read handle maps access 0
        with FileMapping.open("Local\\cfg", 0) as m, pytest.raises(AccessDeniedError):
            m.map_view(0)
        with FileMapping.open("Local\\cfg", Access.READ) as m, m.map_view(0) as v:
            assert not v.writable

    @pytest.mark.parametrize("protect", [Protect.READONLY, Protect.WRITECOPY])
    def test_readonly_object_views(self, protect: Protect) -> None:
        # ref 2.4 item 29 and ref 2.1 item 8 (WRITECOPY object = READONLY object)
        with FileMapping.create("ro", size=PAGE, protect=protect) as m:
            for ok in (Access.READ, Access.COPY, 0):
                with m.map_view(ok):
                    pass
            with pytest.raises(AccessDeniedError):
                m.map_view(Access.WRITE)

    @pytest.mark.parametrize("desired", [FILE_MAP_ALL_ACCESS, Access.WRITE | Access.READ])
    def test_all_access_behaves_as_write(self, named: FileMapping, desired: int) -> None:
        # ref 2.4 item 30
        with named.map_view(desired) as v:
            assert v.writable and not v.copy_on_write
            v[0:3] = b"all"

    def test_copy_view_is_private(self, named: FileMapping) -> None:
        # ref 2.4 item 31: changes never reach the object
        with named.map_view(Access.WRITE) as shared:
            shared[0:4] = b"base"
            with named.map_view(Access.COPY) as cow:
                assert cow.copy_on_write and cow[0:4] == b"base"
                cow[0:4] = b"mine"
                assert shared[0:4] == b"base"
            with named.map_view(Access.COPY) as again:
                assert again[0:4] == b"base"

    def test_execute_needs_execute_object(self, named: FileMapping) -> None:
        # ref 2.4 item 32
        with pytest.raises(AccessDeniedError):
            named.map_view(Access.READ | Access.EXECUTE)
        with FileMapping.create(size=PAGE, protect=Protect.EXECUTE_READ) as m:
            with m.map_view(Access.READ | Access.EXECUTE) as v:
                assert v.kind.prot & mmap.PROT_EXEC

    def test_unknown_access_bits(self, named: FileMapping) -> None:
        with pytest.raises(InvalidParameterError):
            named.map_view(0x100000)

    @given(
        handle=st.integers(0, 0x3F) | st.just(FILE_MAP_ALL_ACCESS),
        protect=st.sampled_from(list(Protect)),
        desired=st.integers(0, 0x3F) | st.just(FILE_MAP_ALL_ACCESS),
    )
    @settings(max_examples=500, deadline=None)
    def test_view_rules_hold_for_every_combination(
        self, handle: int, protect: Protect, desired: int
    ) -> None:
        # ref 2.4 items 25-32 as invariants
        rights = normalize_open_access(handle)
        try:
            kind = view_kind(rights, protect, desired)
        except AccessDeniedError:
            return
        if kind.writable and not kind.private:
            assert rights & Access.WRITE and protect.writable
        if not kind.writable or kind.private:
            assert rights & Access.READ
        if kind.prot & mmap.PROT_EXEC:
            assert rights & Access.EXECUTE and protect.executable
        if desired & Access.WRITE:
            assert kind.writable and not kind.private


# --------------------------------------------------------------------------
# 2.5 geometry
# --------------------------------------------------------------------------


class TestGeometry:
    def test_offset_must_be_64k_multiple(self, named: FileMapping) -> None:
        # ref 2.5 item 33: ERROR_MAPPED_ALIGNMENT (1132), even at a page offset
        for offset in (1, PAGE, GRANULARITY - PAGE):
            with pytest.raises(MappedAlignmentError) as info:
                named.map_view(offset=offset)
            assert info.value.win32_code == 1132
        with named.map_view(offset=GRANULARITY) as v:
            assert len(v) == 3 * GRANULARITY

    def test_size_zero_maps_to_end(self, named: FileMapping) -> None:
        # ref 2.5 item 35
        with named.map_view(offset=2 * GRANULARITY, size=0) as v:
            assert len(v) == 2 * GRANULARITY

    def test_view_past_end_fails_exact_end_succeeds(self, named: FileMapping) -> None:
        # ref 2.5 item 36: STATUS_INVALID_VIEW_SIZE -> ERROR_ACCESS_DENIED
        with pytest.raises(AccessDeniedError):
            named.map_view(offset=0, size=named.size + 1)
        with pytest.raises(AccessDeniedError):
            named.map_view(offset=4 * GRANULARITY)
        with named.map_view(offset=3 * GRANULARITY, size=GRANULARITY) as v:
            assert len(v) == GRANULARITY

    def test_region_rounds_up_to_pages(self, tmp_path: Path) -> None:
        # ref 2.5 item 37: a 4090-byte object occupies a whole page
        path = tmp_path / "f"
        path.write_bytes(b"q" * 4090)
        with FileMapping.create(file=path, protect=Protect.READONLY) as m, m.map_view() as v:
            assert len(v) == 4090
            region = [r for r in read_maps(os.getpid()) if r.start == v.address]
            assert region and region[0].end - region[0].start == PAGE

    def test_two_views_two_addresses_same_data(self, named: FileMapping) -> None:
        # ref 2.5 items 38-39 (coherent within a process)
        with named.map_view() as a, named.map_view() as b:
            assert a.address != b.address
            a[100:105] = b"same!"
            assert b[100:105] == b"same!"

    @given(
        offset_units=st.integers(0, 6),
        extra=st.integers(0, GRANULARITY - 1),
        size=st.integers(0, 6 * GRANULARITY),
    )
    @settings(max_examples=150, deadline=None)
    def test_geometry_rules(self, offset_units: int, extra: int, size: int) -> None:
        # ref 2.5 items 33, 35, 36 over random geometry
        with FileMapping.create(size=4 * GRANULARITY) as m:
            offset = offset_units * GRANULARITY + extra
            try:
                view = m.map_view(offset=offset, size=size)
            except MappedAlignmentError:
                assert extra != 0
                return
            except AccessDeniedError:
                end = offset + (size or (m.size - offset))
                assert offset >= m.size or end > m.size
                return
            with view:
                assert extra == 0
                assert len(view) == (size or m.size - offset)
                assert offset + len(view) <= m.size


# --------------------------------------------------------------------------
# 2.6 lifetime, 2.7 unmap / flush
# --------------------------------------------------------------------------


class TestLifetime:
    def test_views_outlive_the_handle(self) -> None:
        # ref 2.6 item 41
        m = FileMapping.create("life", size=PAGE)
        v = m.map_view()
        m.close()
        v[0:5] = b"alive"
        assert v[0:5] == b"alive"
        v.close()

    def test_name_disappears_with_last_handle_while_views_remain(self, runtime_dir: Path) -> None:
        # ref 2.6 item 42
        m = FileMapping.create("gone", size=PAGE)
        second = FileMapping.open("gone")
        old = m.map_view()
        old[0:3] = b"old"
        m.close()
        assert records(runtime_dir)  # second still holds the name
        second.close()
        assert records(runtime_dir) == []
        with pytest.raises(MappingNotFoundError):
            FileMapping.open("gone")
        with FileMapping.create("gone", size=PAGE) as fresh, fresh.map_view() as new:
            assert fresh.created and new[0:3] == b"\0\0\0"
            new[0:3] = b"new"
            assert old[0:3] == b"old"
        old.close()

    def test_closed_handle_cannot_map(self) -> None:
        m = FileMapping.create(size=PAGE)
        m.close()
        m.close()  # idempotent
        with pytest.raises(ClosedResourceError):
            m.map_view()

    def test_stale_record_is_swept(self, runtime_dir: Path) -> None:
        # rule 5 of _mapping_store: a record without leases is stale
        directory = runtime_dir / "mappings"
        directory.mkdir(mode=0o700, exist_ok=True)
        record = _mapping_store.Record(1, Protect.READWRITE, PAGE, 1, "stale")
        path = directory / MappingName.parse("stale").key
        path.write_bytes(record.encode().ljust(_mapping_store.HEADER_SIZE + PAGE, b"\0"))
        path.chmod(0o600)
        with pytest.raises(MappingNotFoundError):
            FileMapping.open("stale")
        assert not path.exists()
        path.write_bytes(b"junk")
        assert sweep_stale() == 1

    def test_written_data_survives_unmap(self, named: FileMapping) -> None:
        # ref 2.7 item 47
        with named.map_view() as v:
            v[0:4] = b"kept"
        with named.map_view(Access.READ) as v:
            assert v[0:4] == b"kept"

    def test_flush_writes_file_backed_view(self, tmp_path: Path) -> None:
        # ref 2.7 item 48: size 0 flushes to the end; data reaches the file
        path = tmp_path / "data"
        path.write_bytes(bytes(3 * PAGE))
        with FileMapping.create(file=path) as m, m.map_view() as v:
            v[PAGE + 10:PAGE + 15] = b"flush"
            v.flush(PAGE + 10, 0)
            v.flush()
            with open(path, "rb") as fh:
                fh.seek(PAGE + 10)
                assert fh.read(5) == b"flush"

    def test_view_supports_buffer_protocol(self, named: FileMapping) -> None:
        with named.map_view() as v:
            mv = memoryview(v)
            mv[0:2] = b"mv"
            assert bytes(v[0:2]) == b"mv"
            with pytest.raises(BufferError):
                v.close()
            mv.release()

    def test_unnamed_memory_is_size_sealed(self) -> None:
        # threat T35: a process given the fd cannot shrink it under us
        with FileMapping.create(size=PAGE) as m:
            with pytest.raises(PermissionError):
                os.ftruncate(m.fileno(), 0)

    def test_named_file_mapping_shared_by_name(self, tmp_path: Path) -> None:
        path = tmp_path / "shared.bin"
        path.write_bytes(bytes(PAGE))
        with FileMapping.create("filemap", file=path) as m:
            with FileMapping.open("filemap") as other, other.map_view() as v:
                v[0:4] = b"file"
                assert other.info().backing == "file" and other.info().path == str(path)
            assert path.read_bytes()[:4] == b"file"
            path.rename(tmp_path / "moved")
            path.write_bytes(bytes(PAGE))
            with pytest.raises(MappingNotFoundError):
                FileMapping.open("filemap")
            assert m.size == PAGE

    def test_info_as_dict(self, named: FileMapping) -> None:
        d = named.info().as_dict()
        assert d["name"] == "Local\\cfg" and d["protect"] == "READWRITE"
        assert set(d["access"]) == {"READ", "WRITE", "EXECUTE"}  # type: ignore[arg-type]

    def test_global_namespace_dir(self, runtime_dir: Path) -> None:
        path = _mapping_names.namespace_for("global", create=True)
        assert path == runtime_dir / "global" / "mappings"
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
