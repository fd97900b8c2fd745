"""aether.schema: declaring operations, the registry, the strict codec.

Section numbers refer to docs/protocol.md (§7 payload encoding, §9 limits).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from aether.errors import SchemaError
from aether.schema import (
    Describe,
    Echo,
    ErrorInfo,
    Params,
    ProgressInfo,
    Registry,
    Status,
    TypedDecoder,
    encode,
    operation,
    spec_of,
)
from aether.schema.codec import MAX_DEPTH

SRC = Path(__file__).resolve().parents[2] / "src"


class Inner(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int = 0


@operation(code=0x0200, name="test.scan", result=list[Inner])
class Scan(Params, frozen=True, kw_only=True):
    """Scan some paths.

    Longer description.
    """

    paths: list[str]
    algorithm: Literal["sha256", "blake2b"] = "sha256"
    inner: Inner | None = None


@operation(code=0x0201, name="test.anything", privileged=True)
class Anything(Params, frozen=True, kw_only=True):
    """Carries untyped values (the depth limit applies)."""

    value: Any = None
    other: object = None


def specs(*classes: type[Params]) -> list[Any]:
    return [spec_of(c) for c in classes]


# --------------------------------------------------------------------------
# @operation
# --------------------------------------------------------------------------


class TestOperationDecorator:
    def test_records_a_spec(self) -> None:
        spec = spec_of(Scan)
        assert (spec.code, spec.name, spec.params) == (0x0200, "test.scan", Scan)
        assert spec.result == list[Inner]
        assert spec.summary == "Scan some paths."
        assert spec_of(Scan(paths=[])) is spec
        assert spec_of(Anything).privileged and spec_of(Anything).result is type(None)

    @pytest.mark.parametrize("code", [0x0001, 0x0003, 0x0080, 0x00FF])
    def test_reserved_codes_refused(self, code: int) -> None:
        """protocol.md §7: 0x0001-0x00FF belong to the aether.* built-ins."""
        with pytest.raises(ValueError, match="reserved"):
            operation(code=code, name="test.x")

    @pytest.mark.parametrize("code", [0, -1, 0x1_0000_0000])
    def test_codes_out_of_range_refused(self, code: int) -> None:
        """protocol.md §7: codes are 1..2**32-1 (op_code is u32 in the header)."""
        with pytest.raises(ValueError, match="out of range"):
            operation(code=code, name="test.x")

    @pytest.mark.parametrize("code", [0x0100, 0xFFFF_FFFF])
    def test_first_and_last_free_codes_accepted(self, code: int) -> None:
        operation(code=code, name="test.x")

    @pytest.mark.parametrize(
        "name", ["", "Test.Scan", "test scan", ".test", "test..scan", "tést.scan", "a/b"]
    )
    def test_bad_names_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="dotted lowercase"):
            operation(code=0x300, name=name)

    @pytest.mark.parametrize("name", ["aether.echo", "aether.mine"])
    def test_aether_namespace_reserved(self, name: str) -> None:
        with pytest.raises(ValueError, match="reserved"):
            operation(code=0x300, name=name)

    @pytest.mark.parametrize("name", ["guard.scan", "my-svc.do_it", "x", "a1.b2.c3"])
    def test_good_names_accepted(self, name: str) -> None:
        operation(code=0x300, name=name)

    def test_only_params_subclasses(self) -> None:
        class NotParams(msgspec.Struct):
            x: int = 0

        with pytest.raises(TypeError):
            operation(code=0x300, name="test.x")(NotParams)  # type: ignore[type-var]

    def test_spec_of_undeclared_class(self) -> None:
        class Plain(Params, frozen=True, kw_only=True):
            pass

        class Sub(Scan, frozen=True, kw_only=True):
            extra: int = 0

        for cls in (Plain, Sub):  # a subclass does not inherit its parent's declaration
            with pytest.raises(TypeError, match="not declared"):
                spec_of(cls)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------


class TestRegistry:
    def test_builtins_are_always_there(self) -> None:
        reg = Registry.from_modules(specs(Scan))
        assert [(s.code, s.name) for s in reg][:4] == [
            (1, "aether.describe"), (2, "aether.status"), (3, "aether.echo"), (4, "aether.sink")]
        assert len(reg) == 5
        assert 0x200 in reg and "test.scan" in reg and "test.nope" not in reg
        assert reg.get("test.scan") is reg.get(0x200) is spec_of(Scan)
        assert Registry.from_modules(include_builtins=False).by_code(1) is None

    def test_collects_operations_from_a_module(self) -> None:
        reg = Registry.from_modules(sys.modules[__name__])
        assert {"test.scan", "test.anything"} <= {s.name for s in reg}

    def test_unknown_operation_is_a_schema_error(self) -> None:
        reg = Registry.from_modules()
        for key in (0x999, "test.none"):
            with pytest.raises(SchemaError):
                reg.get(key)
        with pytest.raises(SchemaError):
            reg.decode_params(0x999, b"\x80")

    def test_duplicate_code_refused(self) -> None:
        @operation(code=0x0200, name="test.other")
        class Other(Params, frozen=True, kw_only=True):
            pass

        with pytest.raises(ValueError, match="0x200"):
            Registry(specs(Scan, Other))

    def test_duplicate_name_refused(self) -> None:
        @operation(code=0x0202, name="test.scan")
        class Twin(Params, frozen=True, kw_only=True):
            pass

        with pytest.raises(ValueError, match="declared twice"):
            Registry.from_modules(specs(Scan, Twin))

    def test_same_spec_twice_is_fine(self) -> None:
        reg = Registry(specs(Scan, Scan))
        assert len(reg) == 1


# --------------------------------------------------------------------------
# fingerprint and JSON Schema
# --------------------------------------------------------------------------

# Pinned: a change here is a wire-visible change (HELLO's fingerprint, §7).
BUILTINS_FINGERPRINT = 0xC8EF293987AA8AD1  # aether.sink added (issue 4)

SCHEMA_MODULE = '''
from typing import Literal
import msgspec
from aether.schema import Params, operation

class Entry(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    digest: bytes
    tags: dict[str, int] = {}

@operation(code=0x0300, name="fp.scan", result=list[Entry], privileged=True)
class Scan(Params, frozen=True, kw_only=True):
    """Scan."""
    paths: list[str]
    mode: Literal["fast", "full"] = "fast"
    exclude: frozenset[str] = frozenset()
    limit: int | None = None

@operation(code=0x0301, name="fp.ping", result=None)
class Ping(Params, frozen=True, kw_only=True):
    pass

if __name__ == "__main__":
    from aether.schema import Registry
    import sys
    print(Registry.from_modules(sys.modules[__name__]).fingerprint())
'''


class TestFingerprint:
    def test_builtins_fingerprint_is_pinned(self) -> None:
        assert Registry.from_modules().fingerprint() == BUILTINS_FINGERPRINT, (
            "the built-in operations' schema changed: every client and service must agree; "
            "update BUILTINS_FINGERPRINT only for an intended protocol change"
        )

    def test_stable_across_builds_and_processes(self, tmp_path: Path) -> None:
        """protocol.md §7: two builds of the same schema give the same fingerprint,
        whatever the hash seed."""
        module = tmp_path / "fp_schema.py"
        module.write_text(SCHEMA_MODULE)
        values = set()
        for seed in ("1", "2", "random"):
            env = {**os.environ, "PYTHONHASHSEED": seed,
                   "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)])}
            out = subprocess.run([sys.executable, str(module)], env=env, capture_output=True,
                                 text=True, check=True, timeout=60)
            values.add(int(out.stdout))
        assert len(values) == 1
        first = Registry.from_modules(specs(Scan, Anything)).fingerprint()
        assert Registry.from_modules(specs(Anything, Scan)).fingerprint() == first
        assert 0 <= first < 1 << 64

    def test_changes_when_a_field_changes(self) -> None:
        def build(kind: str) -> int:
            if kind == "base":
                class Op(Params, frozen=True, kw_only=True):
                    paths: list[str]
            elif kind == "type":
                class Op(Params, frozen=True, kw_only=True):  # type: ignore[no-redef]
                    paths: list[bytes]
            elif kind == "added":
                class Op(Params, frozen=True, kw_only=True):  # type: ignore[no-redef]
                    paths: list[str]
                    depth: int = 0
            elif kind == "default":
                class Op(Params, frozen=True, kw_only=True):  # type: ignore[no-redef]
                    paths: list[str] = []
            else:
                class Op(Params, frozen=True, kw_only=True):  # type: ignore[no-redef]
                    paths: list[str]
            code, name = (0x401, "fp.op") if kind != "code" else (0x402, "fp.op")
            if kind == "name":
                name = "fp.op2"
            result = int if kind != "result" else str
            operation(code=code, name=name, result=result)(Op)
            return Registry.from_modules(specs(Op)).fingerprint()

        base = build("base")
        assert build("base") == base
        changed = {kind: build(kind) for kind in ("type", "added", "default", "code", "name",
                                                    "result")}
        for kind, value in changed.items():
            assert value != base, kind
        assert len(set(changed.values())) == len(changed)


class TestJsonSchema:
    def test_every_operation_has_params_and_result_schemas(self) -> None:
        """protocol.md §7: aether.describe publishes JSON Schema for every op."""
        reg = Registry.from_modules(sys.modules[__name__])
        described = reg.describe()
        assert [d["code"] for d in described] == [s.code for s in reg]
        for entry in described:
            for key in ("code", "name", "summary", "doc", "privileged", "idempotent"):
                assert key in entry
            for part in ("params", "result"):
                assert isinstance(entry[part], dict) and "$defs" in entry[part]
            assert entry["params"]["$ref"].startswith("#/$defs/")

    def test_scan_schema_content(self) -> None:
        (entry,) = [d for d in Registry(specs(Scan)).describe()]
        params = entry["params"]["$defs"]["Scan"]
        assert params["required"] == ["paths"]
        assert params["properties"]["algorithm"]["enum"] == ["blake2b", "sha256"]
        assert entry["result"]["type"] == "array"
        assert entry["summary"] == "Scan some paths."

    def test_none_result_is_null(self) -> None:
        (entry,) = Registry(specs(Anything)).describe()
        assert entry["result"]["type"] == "null"


# --------------------------------------------------------------------------
# decoding: strict, bounded, never code execution
# --------------------------------------------------------------------------


def mp(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


class TestDecodeErrors:
    @pytest.mark.parametrize(
        ("payload", "path"),
        [
            ({"data": 5}, "$.data"),
            ({"data": "text"}, "$.data"),
        ],
    )
    def test_echo_bad_field_names_its_path(self, payload: Any, path: str) -> None:
        """protocol.md §7: a SchemaError names the field."""
        with pytest.raises(SchemaError) as info:
            Registry.from_modules().decode_params(3, mp(payload))
        assert info.value.path == path
        assert "aether.echo" in str(info.value) and path in str(info.value)

    @pytest.mark.parametrize(
        ("payload", "path"),
        [
            ({"paths": ["a", 3]}, "$.paths[1]"),
            ({"paths": [], "algorithm": "md5"}, "$.algorithm"),
            ({"paths": [], "inner": {"name": 1}}, "$.inner.name"),
            ({"paths": [], "inner": {"size": 1}}, "$.inner"),  # missing field of a nested struct
            ({"paths": "abc"}, "$.paths"),
        ],
    )
    def test_nested_paths(self, payload: Any, path: str) -> None:
        with pytest.raises(SchemaError) as info:
            TypedDecoder(Scan).decode(mp(payload))
        assert info.value.path == path

    def test_top_level_errors_have_an_empty_path_and_name_the_field(self) -> None:
        with pytest.raises(SchemaError) as info:
            TypedDecoder(Scan).decode(mp({}))
        assert info.value.path == "" and "paths" in str(info.value)
        with pytest.raises(SchemaError) as info:
            TypedDecoder(Scan).decode(mp([1, 2]))
        assert info.value.path == ""

    def test_strict_no_coercion(self) -> None:
        with pytest.raises(SchemaError):
            TypedDecoder(Inner).decode(mp({"name": "x", "size": "5"}))
        with pytest.raises(SchemaError):
            TypedDecoder(Inner).decode(mp({"name": "x", "size": 5.0}))

    def test_unknown_fields_are_ignored_for_schema_evolution(self) -> None:
        assert TypedDecoder(Inner).decode(mp({"name": "x", "new": 1})) == Inner(name="x")

    def test_invalid_utf8_is_a_schema_error(self) -> None:
        """A str that is not UTF-8 is a SchemaError like any other bad input."""
        for type_, data in ((Any, b"\xa2\x00\x80"), (ErrorInfo, b"\x81\xa7message\xa2\xff\xfe"),
                            (Scan, b"\x81\xa5paths\x91\xa1\xff")):
            with pytest.raises(SchemaError, match="UTF-8"):
                TypedDecoder(type_).decode(data)

    @pytest.mark.parametrize(
        "data",
        [b"", b"\xc1", b"\x92\x01", b"\x81\xa4data", b"\xd9", b"\x82\xa4data\xc4\x00",
         b"\xc4\x05ab", b"\xa4da"],
    )
    def test_malformed_msgpack(self, data: bytes) -> None:
        with pytest.raises(SchemaError) as info:
            TypedDecoder(Echo).decode(data)
        assert type(info.value) is SchemaError and info.value.path == ""

    def test_trailing_bytes_rejected(self) -> None:
        with pytest.raises(SchemaError, match="trailing"):
            TypedDecoder(Any).decode(mp({"data": b""}) + b"\x00")


class _SpyDecoder:
    calls = 0

    def decode(self, data: Any) -> Any:
        self.calls += 1
        raise AssertionError("msgspec must not see an over-size payload")


class TestLimits:
    def test_over_size_payload_rejected_before_decoding(self) -> None:
        """protocol.md §7: the size check comes before msgspec sees the bytes."""
        dec = TypedDecoder(Echo, max_size=64)
        ok = mp({"data": b"x" * 50})
        assert dec.decode(ok) == Echo(data=b"x" * 50)
        spy = _SpyDecoder()
        dec._decoder = spy  # type: ignore[assignment]
        for size in (65, 1 << 20):
            with pytest.raises(SchemaError, match="exceeds the limit 64"):
                dec.decode(b"\xc0" * size)
        assert spy.calls == 0

    def test_registry_applies_its_max_payload(self) -> None:
        reg = Registry.from_modules()
        reg.max_payload = 100  # as the service host sets it, before the first decode
        assert reg.decode_params(3, mp({"data": b"x" * 10})) == Echo(data=b"x" * 10)
        with pytest.raises(SchemaError, match="exceeds"):
            reg.decode_params(3, mp({"data": b"x" * 100}))

    @staticmethod
    def nested(levels: int, container: str = "list") -> Any:
        value: Any = 0
        for _ in range(levels):
            value = [value] if container == "list" else {"k": value}
        return value

    @pytest.mark.parametrize("field", ["value", "other"])
    @pytest.mark.parametrize("container", ["list", "dict"])
    def test_depth_limit_in_untyped_fields(self, field: str, container: str) -> None:
        """protocol.md §7/§9: at most 32 nested containers, the outermost counted."""
        dec = TypedDecoder(Anything)
        allowed = self.nested(MAX_DEPTH - 1, container)  # + the Anything struct = 32
        assert getattr(dec.decode(mp({field: allowed})), field) == allowed
        for levels in (MAX_DEPTH, 40, 500):
            with pytest.raises(SchemaError, match="nested"):
                dec.decode(mp({field: self.nested(levels, container)}))

    def test_depth_limit_for_a_bare_any(self) -> None:
        dec = TypedDecoder(Any)
        assert dec.decode(mp(self.nested(MAX_DEPTH))) == self.nested(MAX_DEPTH)
        with pytest.raises(SchemaError, match="nested"):
            dec.decode(mp(self.nested(MAX_DEPTH + 1)))

    @pytest.mark.parametrize("levels", [5_000, 200_000])
    def test_nesting_bomb_in_a_small_message(self, levels: int) -> None:
        """One byte per level (0x91 = array of one): stopped, never a crash."""
        data = b"\x81\xa5value" + b"\x91" * levels + b"\x00"
        with pytest.raises(SchemaError, match="nested"):
            TypedDecoder(Anything).decode(data)

    def test_typed_nesting_is_bounded_by_the_type(self) -> None:
        dec = TypedDecoder(list[list[int]])
        assert dec.decode(mp([[1], [2, 3]])) == [[1], [2, 3]]
        with pytest.raises(SchemaError):
            dec.decode(mp([[[1]]]))

    @pytest.mark.parametrize(
        "header",
        [
            b"\xdd\xff\xff\xff\xff",  # array32, 2**32-1 elements
            b"\xdf\xff\xff\xff\xff",  # map32, 2**32-1 pairs
            b"\xdb\xff\xff\xff\xff",  # str32, 4 GiB
            b"\xc6\xff\xff\xff\xff",  # bin32, 4 GiB
        ],
        ids=["array32", "map32", "str32", "bin32"],
    )
    @pytest.mark.parametrize("type_", [Any, Anything, list[int], bytes], ids=str)
    def test_huge_declared_length_rejected_without_allocating(
        self, header: bytes, type_: Any
    ) -> None:
        """protocol.md §7: declared lengths are checked against the bytes present."""
        body = header + b"\x00" * 11
        data = b"\x81\xa5value" + body if type_ is Anything else body
        dec = TypedDecoder(type_)
        tracemalloc.start()
        try:
            with pytest.raises(SchemaError):
                dec.decode(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"decoding allocated {peak} bytes"


class Bomb:
    """Unpickling this calls Bomb.detonate: proof that something unpickled it."""

    detonated: list[str] = []

    @staticmethod
    def detonate(tag: str) -> str:
        Bomb.detonated.append(tag)
        return tag

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Bomb.detonate, ("boom",))


class TestNoPickle:
    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    @pytest.mark.parametrize("type_", [Echo, Scan, Anything, Any, object, bytes, ErrorInfo],
                             ids=str)
    def test_pickle_payload_is_rejected_never_unpickled(
        self, protocol: int, type_: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """protocol.md §7: pickle bytes are malformed MessagePack; nothing unpickles."""
        data = pickle.dumps({"data": Bomb(), "paths": [Bomb()]}, protocol=protocol)
        assert pickle.loads(data) and Bomb.detonated == ["boom", "boom"]  # the bomb is live
        Bomb.detonated.clear()

        def forbidden(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("pickle must never be used to decode a payload")

        monkeypatch.setattr(pickle, "loads", forbidden)
        monkeypatch.setattr(pickle, "load", forbidden)
        monkeypatch.setattr(pickle, "Unpickler", forbidden)
        with pytest.raises(SchemaError):
            TypedDecoder(type_).decode(data)
        assert Bomb.detonated == []

    def test_msgpack_ext_values_stay_inert(self) -> None:
        """No ext hook: an ext value (here wrapping pickle bytes) is refused by typed
        fields and arrives as an inert Ext in untyped ones; nothing is unpickled."""
        inner = pickle.dumps(Bomb())
        ext = msgspec.msgpack.encode(msgspec.msgpack.Ext(1, inner))
        for type_ in (Echo, bytes, Scan):
            data = b"\x81\xa4data" + ext if type_ is Echo else ext
            with pytest.raises(SchemaError):
                TypedDecoder(type_).decode(data)
        value = TypedDecoder(Anything).decode(b"\x81\xa5value" + ext).value
        assert value == msgspec.msgpack.Ext(1, inner)
        assert Bomb.detonated == []


# --------------------------------------------------------------------------
# payload structures and built-ins
# --------------------------------------------------------------------------


class TestPayloads:
    def test_error_info_round_trip_with_needed(self) -> None:
        """protocol.md §7: RESULT_TOO_LARGE carries details.needed."""
        info = ErrorInfo(message="too big", details={"needed": 1 << 20, "size": 999_999})
        decoded = TypedDecoder(ErrorInfo).decode(encode(info))
        assert decoded == info and decoded.details["needed"] == 1 << 20

    def test_error_info_details_are_scalars_only(self) -> None:
        with pytest.raises(SchemaError) as info:
            TypedDecoder(ErrorInfo).decode(mp({"message": "x", "details": {"k": [1]}}))
        assert info.value.path == "$.details[...]"

    def test_progress_info_defaults(self) -> None:
        assert TypedDecoder(ProgressInfo).decode(mp({})) == ProgressInfo()
        info = ProgressInfo(message="file 3", done=3, total=10)
        assert TypedDecoder(ProgressInfo).decode(encode(info)) == info

    def test_builtins(self) -> None:
        reg = Registry.from_modules()
        assert spec_of(Describe).code == 1 and spec_of(Status).code == 2
        assert spec_of(Echo).result is bytes
        assert reg.decode_params(3, encode(Echo(data=b"\x00\xff"))) == Echo(data=b"\x00\xff")
        assert reg.decode_result(3, encode(b"abc")) == b"abc"
        with pytest.raises(SchemaError):
            reg.decode_result(3, encode("not bytes"))

    def test_encode_into(self) -> None:
        from aether.schema import encode_into

        buf = bytearray(b"HEADER--")
        encode_into(Echo(data=b"x"), buf, 8)
        assert bytes(buf[:8]) == b"HEADER--"
        assert TypedDecoder(Echo).decode(bytes(buf[8:])) == Echo(data=b"x")


# --------------------------------------------------------------------------
# hypothesis
# --------------------------------------------------------------------------

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["paths", "data", "value", "inner",
                                                             "name", "algorithm"]),
                      children, max_size=4),
    max_leaves=30,
)
DECODERS = [TypedDecoder(t, max_size=256) for t in (Scan, Anything, Echo, ErrorInfo, Any,
                                                     list[Inner], ProgressInfo)]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(DECODERS), st.one_of(st.binary(max_size=300), msgpack_values.map(mp)))
def test_decode_random_bytes_raises_only_schema_error(dec: TypedDecoder, data: bytes) -> None:
    """Random bytes and random MessagePack values decode or raise SchemaError, nothing else."""
    try:
        dec.decode(data)
    except SchemaError:
        pass
