"""Harness: the parsers of names and packets that come from other processes
or the network (threats T38, T39, T44): remote mailslot packets (UDP, anyone
on the network), mailslot, mapping and atom names.

Invariants: a remote packet decodes to (path, payload) or None and what
decodes re-encodes to the same packet; every name parser returns a value or
raises its typed error (a subclass of AetherError), nothing else; a parsed
mailslot or mapping name never yields a path component that could leave its
namespace (its key is a hex digest).
"""

from __future__ import annotations

import re

try:
    from . import _paths
except ImportError:
    import _paths  # type: ignore[no-redef]  # noqa: F401

from aether.errors import AetherError
from aether.primitives._atom_names import parse_atom
from aether.primitives._mailslot_names import MailslotName
from aether.primitives._mailslot_remote import decode_packet, encode_packet
from aether.primitives._mapping_names import MappingName

_HEX_KEY = re.compile(r"^[0-9a-f]{40,64}(\.[a-z]+)?$")


def _packet(data: bytes) -> None:
    decoded = decode_packet(data)
    if decoded is not None:
        path, payload = decoded
        assert encode_packet(path, payload) == data


def _names(text: str) -> None:
    for parse in (MailslotName.parse, MappingName.parse, parse_atom):
        try:
            value = parse(text)
        except AetherError:
            continue
        if isinstance(value, MailslotName | MappingName):  # these reach the filesystem
            assert _HEX_KEY.match(value.key), (text, value.key)


def one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        _packet(data[1:])
    else:
        _names(data[1:].decode("utf-8", "replace"))
