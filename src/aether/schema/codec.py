"""MessagePack encoding and strict, typed, bounded decoding.

Decoding never executes code (no pickle, no ext hooks) and never allocates
more than the input's size: the payload length is checked against the
limit before msgspec sees it, msgspec checks declared container lengths
against the bytes actually present, and a depth limit stops nesting bombs
in ``Any``-typed fields. Every failure is a :class:`SchemaError` that names
the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from aether.errors import SchemaError

DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
MAX_DEPTH = 32

_encoder = msgspec.msgpack.Encoder()
_PATH = re.compile(r" - at `(\$[^`]*)`")


def encode(obj: Any) -> bytes:
    """Encode any msgspec-encodable object as MessagePack."""
    return _encoder.encode(obj)


def encode_into(obj: Any, buffer: bytearray, offset: int = 0) -> None:
    """Encode ``obj`` into ``buffer`` at ``offset`` (the buffer grows as needed)."""
    _encoder.encode_into(obj, buffer, offset)


# The encoder's own method, for the calls' short paths, where encode_into's
# Python frame costs 40 ns of the 70 a 64-byte encode takes. Always pass the
# offset: without it, msgspec (0.22 here) writes into a buffer that cannot grow (a
# view of it is alive) before it raises BufferError, and the view's bytes
# change (tests/service/test_result_buffer.py).
encode_into_at: Callable[[Any, bytearray, int], None] = _encoder.encode_into


class TypedDecoder:
    """A strict decoder for one type with a size limit."""

    def __init__(self, type_: Any, *, max_size: int = DEFAULT_MAX_PAYLOAD, what: str = "") -> None:
        self.type = type_
        self.max_size = max_size
        self.what = what or getattr(type_, "__name__", repr(type_))
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(type_)
        self._unbounded = _may_nest_unboundedly(type_)
        # For the calls' short paths: msgspec's own decode, where a value
        # needs no depth check (None otherwise). It raises msgspec's errors,
        # not SchemaError: a caller that gets any error from it calls
        # decode() for the typed one. Payloads over max_size are decode()'s.
        self.quick: Callable[[Any], Any] | None = None if self._unbounded \
            else self._decoder.decode

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        if len(data) > self.max_size:
            raise SchemaError(
                f"{self.what}: payload of {len(data)} bytes exceeds the limit {self.max_size}"
            )
        try:
            value = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            match = _PATH.search(str(exc))
            raise SchemaError(f"{self.what}: {exc}", path=match.group(1) if match else "") from None
        except msgspec.DecodeError as exc:
            raise SchemaError(f"{self.what}: malformed MessagePack ({exc})") from None
        except UnicodeDecodeError as exc:  # msgspec raises it as is for a bad str
            raise SchemaError(f"{self.what}: a string is not valid UTF-8 ({exc.reason})") \
                from None
        except RecursionError:
            raise SchemaError(f"{self.what}: payload nested too deeply") from None
        if self._unbounded:
            _check_depth(value, self.what)
        return value


def _may_nest_unboundedly(type_: Any) -> bool:
    """True if ``type_`` admits arbitrarily deep values (``Any`` or recursion)."""
    seen: set[int] = set()
    stack: list[Any] = [msgspec.inspect.type_info(type_)]
    while stack:
        info = stack.pop()
        if isinstance(info, msgspec.inspect.AnyType):
            return True
        if isinstance(info, msgspec.inspect.CustomType) and info.cls is object:
            return True
        if id(info) in seen:
            return True  # a recursive type
        if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
            seen.add(id(info))
            stack.extend(f.type for f in info.fields)
        elif isinstance(info, msgspec.inspect.UnionType):
            stack.extend(info.types)
        else:
            for attr in ("item_type", "key_type", "value_type"):
                child = getattr(info, attr, None)
                if child is not None:
                    stack.append(child)
            stack.extend(getattr(info, "item_types", ()))
    return False


def _check_depth(value: Any, what: str) -> None:
    """Reject untyped containers nested deeper than MAX_DEPTH (dbus's limit is
    32 arrays + 32 structs); typed Structs are bounded by their own types."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        elif isinstance(item, msgspec.Struct):
            children = [getattr(item, f) for f in item.__struct_fields__]
        else:
            continue
        if depth >= MAX_DEPTH:
            raise SchemaError(f"{what}: payload nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
