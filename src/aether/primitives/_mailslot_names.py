r"""Mailslot names: ``\\server\mailslot\[path\]name`` (reference 4.1, 4.13).

- ``\\.\mailslot\...`` is a mailslot on this machine (the only form
  CreateMailslot accepts, reference 4.6);
- ``\\*\mailslot\...`` reaches every mailslot of that name on the local
  network (UDP broadcast);
- ``\\host\mailslot\...`` reaches one machine (UDP unicast). A Windows
  domain name has the same shape and is treated as a host name here.

Names are case-insensitive (reference 4.2). Comparison folds each
character with its single-character upper case, as the NT upcase table
does (``str.upper`` alone would turn ``ß`` into ``SS``). The folded path is
hashed before it reaches the filesystem.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar

from aether.errors import InvalidNameError, Win32Error

__all__ = ["MailslotName", "fold_case"]

_KEYWORD = "MAILSLOT"
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,252}$")


def fold_case(text: str) -> str:
    """Upper-case each character that has a single-character upper case."""
    out = []
    for ch in text:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


@dataclass(frozen=True)
class MailslotName:
    r"""A validated mailslot name.

    Attributes:
        text: as given, e.g. ``\\.\mailslot\app\events``.
        server: ``"."``, ``"*"`` or a host name.
        path: the part after ``mailslot\``, e.g. ``app\events``.
    """

    MAX_LEN: ClassVar[int] = 259  # the NT name must stay under MAX_PATH (4.5)

    text: str
    server: str
    path: str

    @classmethod
    def parse(cls, text: str | MailslotName) -> MailslotName:
        """Check a name.

        Raises:
            InvalidNameError: not of the mailslot form, empty components,
                control characters (ERROR_INVALID_NAME), or too long
                (ERROR_FILENAME_EXCED_RANGE).
        """
        if isinstance(text, MailslotName):
            return text
        if not isinstance(text, str):
            raise InvalidNameError(f"a mailslot name must be a str, not {type(text).__name__}")
        if len(text) > cls.MAX_LEN:
            raise InvalidNameError(
                f"mailslot name of {len(text)} characters exceeds {cls.MAX_LEN}",
                win32_code=Win32Error.ERROR_FILENAME_EXCED_RANGE,
            )
        if not text.startswith("\\\\"):
            raise InvalidNameError(f"{text!r} is not of the form \\\\.\\mailslot\\name")
        parts = text[2:].split("\\")
        if len(parts) < 3 or fold_case(parts[1]) != _KEYWORD:
            raise InvalidNameError(f"{text!r} is not of the form \\\\.\\mailslot\\name")
        server, path_parts = parts[0], parts[2:]
        if server not in (".", "*") and not _HOST.match(server):
            raise InvalidNameError(f"{server!r} is not a valid server in {text!r}")
        for part in path_parts:
            if not part:
                raise InvalidNameError(f"{text!r} has an empty path component")
            if any(ord(ch) < 0x20 or ch == "/" for ch in part):
                raise InvalidNameError(f"{text!r} contains a control character or '/'")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidNameError("a mailslot name must be valid Unicode") from None
        return cls(text=text, server=server, path="\\".join(path_parts))

    @property
    def is_local(self) -> bool:
        return self.server == "."

    @property
    def is_broadcast(self) -> bool:
        return self.server == "*"

    @property
    def folded_path(self) -> str:
        """The case-folded path: what two names must share to be equal."""
        return fold_case(self.path)

    @property
    def local_name(self) -> MailslotName:
        r"""The same mailslot as seen on its own machine (``\\.\mailslot\...``)."""
        return MailslotName(text=f"\\\\.\\mailslot\\{self.path}", server=".", path=self.path)

    @property
    def key(self) -> str:
        """The file-name stem of this mailslot's record and socket."""
        digest = hashlib.sha256(self.folded_path.encode("utf-8")).hexdigest()
        return digest[:40]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MailslotName):
            return NotImplemented
        return (fold_case(self.server), self.folded_path) == (
            fold_case(other.server),
            other.folded_path,
        )

    def __hash__(self) -> int:
        return hash((fold_case(self.server), self.folded_path))

    def __str__(self) -> str:
        return self.text
