"""aether.primitives.atoms in one process: rules of win32-ipc-semantics.md section 1.

Comments cite the reference items ("ref 1.11" = section 1, item 11).
Multi-process behaviour is in test_atoms_multiprocess.py.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from aether.errors import (
    ClosedResourceError,
    InvalidHandleError,
    InvalidNameError,
    InvalidParameterError,
    NotFoundError,
    OSAPIError,
    Win32Error,
)
from aether.primitives import _atom_store as store_mod
from aether.primitives._atom_local import wine_hash
from aether.primitives._atom_names import fold
from aether.primitives.atoms import (
    MAX_STRING_ATOMS,
    MAXINTATOM,
    AtomInfo,
    AtomTable,
    AtomTableCorruptError,
    AtomTableFullError,
    GlobalAtomTable,
    LocalAtomTable,
    parse_atom,
)


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def global_table(runtime_dir: Path) -> Iterator[GlobalAtomTable]:
    table = GlobalAtomTable()
    yield table
    table.close()


@pytest.fixture(params=["local", "global"])
def table(request: pytest.FixtureRequest, runtime_dir: Path) -> AtomTable:
    if request.param == "local":
        return LocalAtomTable()
    t = GlobalAtomTable()
    request.addfinalizer(t.close)
    return t


# --------------------------------------------------------------------------
# Parsing, against a reference written from the spec (ref 1.10-1.12)
# --------------------------------------------------------------------------

_INT_NAME = re.compile(r"#([0-9]+)")


def reference_parse(name: str) -> tuple[str, int | None]:
    """Spec, ref 1.10-1.12 and 1.3/1.8: '#' + ASCII decimal digits is an integer
    atom (0 or >= 0xC000 invalid, leading zeros unlimited); otherwise a string
    atom of 1-255 UTF-16 units."""
    match = _INT_NAME.fullmatch(name)
    if match:
        value = int(match.group(1).lstrip("0") or "0")
        return ("int", value) if 1 <= value <= 0xBFFF else ("invalid-parameter", None)
    if name == "":
        return ("invalid-name", None)
    if len(name.encode("utf-16-le", "surrogatepass")) // 2 > 255:
        return ("invalid-parameter", None)
    return ("string", None)


def classify(name: str) -> tuple[str, int | None]:
    try:
        parsed = parse_atom(name)
    except InvalidNameError:
        return ("invalid-name", None)
    except InvalidParameterError:
        return ("invalid-parameter", None)
    return ("int", parsed) if isinstance(parsed, int) else ("string", None)


# Includes non-ASCII digits (ARABIC-INDIC THREE, FULLWIDTH ZERO): not "digits" here.
_name_chars = st.sampled_from([*"#0123456789 +-xXabcC", "\u0663", "\uff10", "\U0001f600"])


@given(st.text(_name_chars, max_size=12) | st.text(max_size=300))
def test_parse_atom_matches_reference(name: str) -> None:  # ref 1.10, 1.11, 1.12
    if "\0" in name:
        return  # NUL cannot occur in a Win32 string; covered separately
    assert classify(name) == reference_parse(name)


@given(st.integers(min_value=0, max_value=0x1FFFF))
def test_parse_atom_integers(value: int) -> None:  # ref 1.13
    expected = ("int", value) if 1 <= value <= 0xBFFF else ("invalid-parameter", None)
    try:
        got: tuple[str, int | None] = ("int", parse_atom(value))  # type: ignore[arg-type]
    except InvalidParameterError:
        got = ("invalid-parameter", None)
    assert got == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("#1", 1), ("#01", 1), ("#00001", 1), ("#0123", 123), ("#49151", 0xBFFF), ("#1234", 0x4D2)],
)
def test_integer_atom_names(name: str, value: int) -> None:  # ref 1.10, 1.11
    assert parse_atom(name) == value


@pytest.mark.parametrize("name", ["#0", "#0000", "#49152", "#65536", "#99999999999"])
def test_invalid_integer_atom_names(name: str) -> None:  # ref 1.10, 1.11
    with pytest.raises(InvalidParameterError) as info:
        parse_atom(name)
    assert info.value.win32_code == Win32Error.ERROR_INVALID_PARAMETER


@pytest.mark.parametrize(
    "name", ["#", "#7b", "#0x7b", "# 123", "#+123", "#c000", "123", "0x1", "1", "#١٢"]
)
def test_string_atom_lookalikes(name: str, table: AtomTable) -> None:  # ref 1.11
    atom = table.add(name)
    assert atom >= MAXINTATOM
    assert table.get_name(atom) == name


def test_leading_zeros_unlimited(table: AtomTable) -> None:  # ref 1.12
    assert table.add("#" + "0" * 280 + "1") == 1
    assert table.add("0" * 255) >= MAXINTATOM
    with pytest.raises(InvalidParameterError):
        table.add("0" * 256)


# --------------------------------------------------------------------------
# Values, names, case (ref 1.1-1.8)
# --------------------------------------------------------------------------


def test_string_atoms_take_c000_and_up(table: AtomTable) -> None:  # ref 1.1
    atoms = [table.add(f"name{i}") for i in range(5)]
    assert atoms == list(range(MAXINTATOM, MAXINTATOM + 5))


def test_length_limit_255(table: AtomTable) -> None:  # ref 1.3
    assert table.get_name(table.add("a" * 255)) == "a" * 255
    with pytest.raises(InvalidParameterError) as info:
        table.add("b" * 256)
    assert info.value.win32_code == Win32Error.ERROR_INVALID_PARAMETER
    with pytest.raises(InvalidParameterError):
        table.find("b" * 256)


def test_length_counts_utf16_units(table: AtomTable) -> None:  # ref 1.3
    emoji = "\U0001f600"  # two UTF-16 units
    assert table.add(emoji * 127 + "x") >= MAXINTATOM  # 255 units
    with pytest.raises(InvalidParameterError):
        table.add(emoji * 128)  # 256 units


def test_case_insensitive_first_case_kept(table: AtomTable) -> None:  # ref 1.4
    atom = table.add("FooBar")
    assert table.add("foobar") == atom
    assert table.add("FOOBAR") == atom
    assert table.find("fOObAR") == atom
    assert table.get_name(atom) == "FooBar"
    assert table.refcount(atom) == 3


def test_whole_string_match_only(table: AtomTable) -> None:  # ref 1.5
    table.add("foobar")
    for other in ("foo", "foobar ", "_foobar", "oobar"):
        with pytest.raises(NotFoundError) as info:
            table.find(other)
        assert info.value.win32_code == Win32Error.ERROR_FILE_NOT_FOUND


def test_case_folding_is_per_character(table: AtomTable) -> None:  # ref 1.6
    assert table.add("été") == table.find("ÉTÉ")
    sharp = table.add("straße")
    assert table.find("STRAßE") == sharp
    with pytest.raises(NotFoundError):
        table.find("STRASSE")  # no multi-character folding
    assert fold("ß") == "ß"


def test_empty_name_is_invalid(table: AtomTable) -> None:  # ref 1.8
    with pytest.raises(InvalidNameError) as info:
        table.add("")
    assert info.value.win32_code == Win32Error.ERROR_INVALID_NAME


def test_nul_in_name_is_invalid(table: AtomTable) -> None:  # names are validated types
    with pytest.raises(InvalidNameError):
        table.add("a\0b")


# --------------------------------------------------------------------------
# Integer atoms (ref 1.13-1.16)
# --------------------------------------------------------------------------


def test_integer_atoms_need_no_entry(table: AtomTable) -> None:  # ref 1.13, 1.14
    assert table.add(1) == 1
    assert table.add(0xBFFF) == 0xBFFF
    assert table.add("#123") == 123
    assert len(table) == 0
    assert table.find(123) == 123  # found without being added
    assert table.find("#77") == 77
    assert table.refcount(123) == 1
    with pytest.raises(InvalidParameterError):
        table.add(0)
    with pytest.raises(InvalidParameterError):
        table.add(0xC000)


def test_delete_integer_atom_does_nothing(table: AtomTable) -> None:  # ref 1.15
    assert table.delete(123) == 1
    assert table.delete(123) == 1
    assert table.find(123) == 123


def test_integer_atom_names_are_decimal(table: AtomTable) -> None:  # ref 1.16
    assert table.get_name(1) == "#1"
    assert table.get_name(0x04D2) == "#1234"
    assert table.get_name(0xBFFF) == "#49151"
    with pytest.raises(InvalidParameterError):
        table.get_name(0)


# --------------------------------------------------------------------------
# Reference counts (ref 1.17-1.23)
# --------------------------------------------------------------------------


def test_refcount_add_delete(table: AtomTable) -> None:  # ref 1.17, 1.18
    atom = table.add("counted")
    assert table.add("counted") == atom and table.add("Counted") == atom
    assert table.refcount(atom) == 3
    assert table.delete(atom) == 2
    assert table.delete(atom) == 1
    assert table.find("counted") == atom
    assert table.delete(atom) == 0
    with pytest.raises(NotFoundError):
        table.find("counted")


def test_missing_string_atom_is_invalid_handle(table: AtomTable) -> None:  # ref 1.21
    for call in (table.delete, table.get_name, table.refcount):
        with pytest.raises(InvalidHandleError) as info:
            call(0xC123)
        assert info.value.win32_code == Win32Error.ERROR_INVALID_HANDLE


def test_lowest_free_slot_is_reused(table: AtomTable) -> None:  # ref 1.22
    a, b, c = (table.add(n) for n in ("a", "b", "c"))
    table.delete(b)
    table.delete(a)
    assert table.add("d") == a
    assert table.add("e") == b
    assert table.add("f") == c + 1


def test_delete_with_name_guards_reuse(table: AtomTable) -> None:  # ref 1.18, 1.22
    atom = table.add("first")
    table.delete(atom)
    assert table.add("second") == atom  # same value, another string
    with pytest.raises(InvalidHandleError):
        table.delete(atom, name="first")
    assert table.delete(atom, name="SECOND") == 0


def test_table_full_at_16384(table: AtomTable) -> None:  # ref 1.2, 1.38
    for i in range(MAX_STRING_ATOMS):
        table.add(f"a{i}")
    assert len(table) == MAX_STRING_ATOMS
    with pytest.raises(AtomTableFullError) as info:
        table.add("one too many")
    assert info.value.win32_code == Win32Error.ERROR_NOT_ENOUGH_MEMORY
    assert table.add("a7") == MAXINTATOM + 7  # existing names still work
    table.delete(MAXINTATOM + 100)
    assert table.add("fits again") == MAXINTATOM + 100


def test_iteration_is_a_snapshot(table: AtomTable) -> None:
    table.add("b")
    table.add("a")
    table.add("A")
    infos = list(table)
    assert infos == [AtomInfo(0xC000, "b", 1), AtomInfo(0xC001, "a", 2)]
    assert "B" in table and "zz" not in table and 5 in table and "" not in table
    assert len(table) == 2


# --------------------------------------------------------------------------
# Local table (ref 1.30-1.34)
# --------------------------------------------------------------------------


def test_local_table_default_37_buckets() -> None:  # ref 1.30
    assert LocalAtomTable().buckets == 37
    assert LocalAtomTable(buckets=101).buckets == 101
    for bad in (0, -1, 0x10000):
        with pytest.raises(InvalidParameterError):
            LocalAtomTable(buckets=bad)


def test_local_hash_is_wines() -> None:  # ref 1.33 (Wine-specific choice)
    assert wine_hash("AB") == (ord("A") + 0) ^ (ord("B") + 1)
    table = LocalAtomTable(buckets=1)  # every name in one chain still works
    atoms = {table.add(f"n{i}") for i in range(50)}
    assert len(atoms) == 50 and table.find("N49") in atoms


def test_local_tables_are_separate(runtime_dir: Path) -> None:  # ref 1.34
    one, two = LocalAtomTable(), LocalAtomTable()
    one.add("only-here")
    with pytest.raises(NotFoundError):
        two.find("only-here")
    with GlobalAtomTable() as g, pytest.raises(NotFoundError):
        g.find("only-here")


# --------------------------------------------------------------------------
# Global table file: sharing, security, crash recovery (ref 1.35-1.40)
# --------------------------------------------------------------------------


def test_global_instances_share_one_table(global_table: GlobalAtomTable) -> None:  # ref 1.35
    atom = global_table.add("shared")
    with GlobalAtomTable() as other:
        assert other.find("SHARED") == atom
        other.add("shared")
    assert global_table.refcount(atom) == 2
    assert GlobalAtomTable.default().find("shared") == atom


def test_global_table_file_is_private(global_table: GlobalAtomTable, runtime_dir: Path) -> None:
    # ref 1.40: Windows lets the whole session read it; Aether is per-user.
    st_dir = os.lstat(runtime_dir / "atoms")
    st_file = os.lstat(global_table.path)
    assert stat.S_IMODE(st_dir.st_mode) == 0o700
    assert stat.S_IMODE(st_file.st_mode) == 0o600
    assert st_file.st_uid == os.geteuid()
    assert global_table.path.parent == runtime_dir / "atoms"


def test_refuses_file_open_to_others(global_table: GlobalAtomTable) -> None:
    os.chmod(global_table.path, 0o666)
    with pytest.raises(OSAPIError) as info:
        GlobalAtomTable()
    assert "open to other users" in str(info.value)


def test_refuses_symlinked_table(runtime_dir: Path, tmp_path: Path) -> None:
    atoms_dir = runtime_dir / "atoms"
    atoms_dir.mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_bytes(b"")
    os.symlink(tmp_path / "elsewhere", atoms_dir / store_mod.TABLE_FILE_NAME)
    with pytest.raises(OSAPIError):
        GlobalAtomTable()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_refuses_table_owned_by_another_user(global_table: GlobalAtomTable) -> None:
    os.chown(global_table.path, 12345, 12345)
    with pytest.raises(OSAPIError) as info:
        GlobalAtomTable()
    assert "owned by uid 12345" in str(info.value)


def test_refuses_foreign_file(runtime_dir: Path) -> None:
    atoms_dir = runtime_dir / "atoms"
    atoms_dir.mkdir(mode=0o700)
    path = atoms_dir / store_mod.TABLE_FILE_NAME
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.ftruncate(fd, store_mod.FILE_SIZE)
    os.close(fd)
    with pytest.raises(AtomTableCorruptError):
        GlobalAtomTable()


def test_closed_table_raises(global_table: GlobalAtomTable) -> None:
    global_table.close()
    global_table.close()
    with pytest.raises(ClosedResourceError):
        global_table.add("x")


def _die_mid_update(table: GlobalAtomTable, name: str, writes: int) -> None:
    """Do what a process killed after ``writes`` journaled writes of an add leaves."""

    class Killed(BaseException):
        pass

    count = 0

    def hook(_what: str) -> None:
        nonlocal count
        count += 1
        if count == writes:
            raise Killed

    store = table._file_store
    store.crash_hook = hook
    # Disable the in-process rollback so the state is what a dead process leaves.
    real_rollback = store._journal.rollback
    store._journal.rollback = lambda: 0  # type: ignore[method-assign]
    with pytest.raises(Killed):
        table.add(name)
    store._journal.rollback = real_rollback  # type: ignore[method-assign]
    store.crash_hook = None


@pytest.mark.parametrize("writes", [1, 2, 3, 4])
def test_half_done_add_is_rolled_back(global_table: GlobalAtomTable, writes: int) -> None:
    global_table.add("before")
    generation = global_table.generation()
    _die_mid_update(global_table, "victim", writes)
    mm = global_table._file_store._file.mm
    assert mm[store_mod.OFF_ACTIVE] == 1  # left mid-transaction
    with GlobalAtomTable() as survivor:
        with pytest.raises(NotFoundError):
            survivor.find("victim")
        assert survivor.recoveries == 1
        survivor.verify()
        assert [i.name for i in survivor] == ["before"]
        assert survivor.generation() == generation
        assert survivor.add("after") == MAXINTATOM + 1


def test_half_done_delete_is_rolled_back(global_table: GlobalAtomTable) -> None:
    atoms = [global_table.add(n) for n in ("a", "b", "c")]
    store = global_table._file_store

    class Killed(BaseException):
        pass

    def hook(_what: str) -> None:
        raise Killed

    store.crash_hook = hook
    store._journal.rollback = lambda: 0  # type: ignore[method-assign]
    with pytest.raises(Killed):
        global_table.delete(atoms[1])
    with GlobalAtomTable() as survivor:
        survivor.verify()
        assert [i.name for i in survivor] == ["a", "b", "c"]
        assert survivor.refcount(atoms[1]) == 1


def test_torn_journal_record_is_ignored(global_table: GlobalAtomTable) -> None:
    _die_mid_update(global_table, "victim", 1)
    mm = global_table._file_store._file.mm
    # The writer died while appending its second record: the header is there
    # but the saved bytes are not what its CRC covers. Applying them would set
    # count to 0xFFFFFFFF; recovery must stop before it.
    seq = struct.unpack_from("<Q", mm, store_mod.OFF_SEQ)[0]
    first_len = struct.unpack_from("<QIIII", mm, store_mod.OFF_RECORDS)[2]
    second = store_mod.OFF_RECORDS + 24 + ((first_len + 7) & ~7)
    struct.pack_into("<QIIII", mm, second, seq, store_mod.OFF_COUNT, 4, 0x12345678, 0)
    mm[second + 24 : second + 28] = b"\xff\xff\xff\xff"
    with GlobalAtomTable() as survivor:
        assert len(survivor) == 0
        survivor.verify()
        assert survivor.recoveries == 1


def test_exception_inside_update_rolls_back(global_table: GlobalAtomTable) -> None:
    class Boom(Exception):
        pass

    def hook(_what: str) -> None:
        raise Boom

    global_table._file_store.crash_hook = hook
    with pytest.raises(Boom):
        global_table.add("x")
    global_table._file_store.crash_hook = None
    global_table.verify()
    assert len(global_table) == 0


def test_verify_detects_corruption(global_table: GlobalAtomTable) -> None:
    atom = global_table.add("x")
    global_table.verify()
    mm = global_table._file_store._file.mm
    mm[store_mod.OFF_USED + 5] = 1  # a used slot in no chain
    with pytest.raises(AtomTableCorruptError):
        global_table.verify()
    mm[store_mod.OFF_USED + 5] = 0
    slot = store_mod.OFF_SLOTS + (atom - MAXINTATOM) * store_mod.SLOT_SIZE
    struct.pack_into("<I", mm, slot + 8, atom - MAXINTATOM + 1)  # chain points at itself
    with pytest.raises(AtomTableCorruptError):
        global_table.verify()


def test_forked_child_reopens_table(global_table: GlobalAtomTable) -> None:  # ref 1.35
    global_table.add("parent")
    pid = os.fork()
    if pid == 0:  # child: must not share the parent's flock
        code = 0
        try:
            global_table.add("from-child")
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert global_table.refcount(global_table.find("from-child")) == 1
