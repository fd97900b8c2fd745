"""The set of operations a service offers, with their decoders and the
schema fingerprint both sides compare in HELLO."""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from aether.errors import SchemaError

from .codec import DEFAULT_MAX_PAYLOAD, TypedDecoder
from .params import SPEC_ATTR, OperationSpec, Params


class Registry:
    """Operations by code and by name.

    Build one from the schema modules both sides import::

        registry = Registry.from_modules(aether_guard.schema)
    """

    def __init__(
        self, specs: Iterable[OperationSpec] = (), *, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> None:
        self.max_payload = max_payload
        self._by_code: dict[int, OperationSpec] = {}
        self._by_name: dict[str, OperationSpec] = {}
        self._param_decoders: dict[int, TypedDecoder] = {}
        self._result_decoders: dict[int, TypedDecoder] = {}
        for spec in specs:
            self.add(spec)

    @classmethod
    def from_modules(cls, *modules: types.ModuleType | Iterable[OperationSpec],
                     include_builtins: bool = True) -> Registry:
        """Collect every ``@operation`` class defined in ``modules``."""
        reg = cls()
        if include_builtins:
            from . import builtins

            reg.extend(_specs_in(builtins))
        for module in modules:
            if isinstance(module, types.ModuleType):
                reg.extend(_specs_in(module))
            else:
                reg.extend(module)
        return reg

    def add(self, spec: OperationSpec) -> None:
        if spec.code in self._by_code and self._by_code[spec.code] is not spec:
            raise ValueError(f"operation code 0x{spec.code:x} is used by "
                             f"{self._by_code[spec.code].name} and {spec.name}")
        if spec.name in self._by_name and self._by_name[spec.name] is not spec:
            raise ValueError(f"operation name {spec.name} is declared twice")
        self._by_code[spec.code] = spec
        self._by_name[spec.name] = spec

    def extend(self, specs: Iterable[OperationSpec]) -> None:
        for spec in specs:
            self.add(spec)

    def __iter__(self) -> Iterator[OperationSpec]:
        return iter(sorted(self._by_code.values(), key=lambda s: s.code))

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, key: object) -> bool:
        return key in self._by_code or key in self._by_name

    def by_code(self, code: int) -> OperationSpec | None:
        return self._by_code.get(code)

    def by_name(self, name: str) -> OperationSpec | None:
        return self._by_name.get(name)

    def get(self, key: int | str) -> OperationSpec:
        spec = self._by_code.get(key) if isinstance(key, int) else self._by_name.get(key)
        if spec is None:
            raise SchemaError(f"unknown operation {key!r}")
        return spec

    # -- codecs -------------------------------------------------------------
    def params_decoder(self, code: int) -> TypedDecoder:
        """The (cached) strict decoder of ``code``'s parameters."""
        dec = self._param_decoders.get(code)
        if dec is None:
            spec = self.get(code)
            dec = TypedDecoder(spec.params, max_size=self.max_payload, what=spec.name)
            self._param_decoders[code] = dec
        return dec

    def decode_params(self, code: int, payload: bytes | bytearray | memoryview) -> Params:
        value: Params = self.params_decoder(code).decode(payload)
        return value

    def decode_result(self, code: int, payload: bytes | bytearray | memoryview) -> Any:
        return self.result_decoder(code).decode(payload)

    def result_decoder(self, code: int) -> TypedDecoder:
        """The decoder of ``code``'s results (made once, then reused)."""
        dec = self._result_decoders.get(code)
        if dec is None:
            spec = self.get(code)
            dec = TypedDecoder(spec.result, max_size=1 << 40, what=f"{spec.name} result")
            self._result_decoders[code] = dec
        return dec

    # -- introspection ------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Every operation with the JSON Schema of its parameters and result."""
        out = []
        for spec in self:
            (params_schema, result_schema), components = msgspec.json.schema_components(
                [spec.params, spec.result], ref_template="#/$defs/{name}",
                schema_hook=_schema_hook,
            )
            out.append(
                {
                    "code": spec.code,
                    "name": spec.name,
                    "summary": spec.summary,
                    "doc": spec.doc.strip(),
                    "privileged": spec.privileged,
                    "idempotent": spec.idempotent,
                    "params": {**params_schema, "$defs": components},
                    "result": {**result_schema, "$defs": components},
                }
            )
        return out

    def fingerprint(self) -> int:
        """A stable 64-bit hash of every operation's code, name, flags and schemas."""
        canonical = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little")


def _schema_hook(type_: Any) -> dict[str, Any]:
    """JSON Schema for types msgspec has none for: ``object`` means any value,
    like ``Any`` (the codec accepts both)."""
    if type_ is object:
        return {"description": "any value"}
    raise TypeError(f"no JSON Schema for {type_!r}: use msgspec-supported types in operations")


def _specs_in(module: types.ModuleType) -> list[OperationSpec]:
    specs = []
    for value in vars(module).values():
        spec = getattr(value, SPEC_ATTR, None) if isinstance(value, type) else None
        if isinstance(spec, OperationSpec) and spec.params is value:
            specs.append(spec)
    return specs
