"""Names of file mappings and where each namespace lives on Linux.

Win32 object names (reference 2.2) are case-sensitive, may start with the
case-sensitive keyword ``Local\\`` or ``Global\\``, and may not contain
another backslash; ``Session\\`` is reserved. A name is checked once, by
:meth:`MappingName.parse`, and reaches the filesystem only as a SHA-256 hex
digest, so no name can traverse, collide with a special file, or exceed
``NAME_MAX``.

Namespaces on Linux:

- ``Local\\`` (and no prefix): the calling *user's* namespace,
  ``<user runtime dir>/mappings`` (0700). Windows scopes ``Local\\`` to a
  logon session; Linux has no kernel object namespace per session, and the
  per-user directory is the boundary that needs no trust in other users.
- ``Global\\``: the machine's namespace, ``/run/aether/mappings`` (root,
  0755). As creating a global object on Windows needs
  SeCreateGlobalPrivilege (reference 2.20), creating one here needs root;
  opening one needs only the permission bits the creator chose (``mode``).
  With ``AETHER_RUNTIME_DIR`` set (tests), the global namespace is
  ``$AETHER_RUNTIME_DIR/global/mappings`` instead, so tests stay isolated.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from aether import runtime
from aether.errors import InvalidNameError, OSAPIError, Win32Error
from aether.osapi import check_directory, ensure_private_directory

__all__ = ["MappingName", "Scope", "may_create_global", "namespace_for"]

Scope = Literal["local", "global"]

_LOCAL = "Local\\"
_GLOBAL = "Global\\"
_SESSION = "Session\\"


@dataclass(frozen=True)
class MappingName:
    """A validated file-mapping name.

    Attributes:
        text: the name exactly as given (``"Local\\\\cfg"``).
        scope: ``"local"`` or ``"global"``.
        base: the part after the prefix, compared case-sensitively.
    """

    MAX_LEN: ClassVar[int] = 260  # MAX_PATH, reference 2.21

    text: str
    scope: Scope
    base: str

    @classmethod
    def parse(cls, text: str | MappingName) -> MappingName:
        """Check ``text`` and split off its namespace prefix.

        Raises:
            InvalidNameError: empty, too long (ERROR_FILENAME_EXCED_RANGE),
                a NUL or unencodable character, ``Session\\``, or an empty
                base (ERROR_INVALID_NAME); a backslash inside the base
                (ERROR_PATH_NOT_FOUND, as Windows finds no such directory).
        """
        if isinstance(text, MappingName):
            return text
        if not isinstance(text, str):
            raise InvalidNameError(f"a mapping name must be a str, not {type(text).__name__}")
        if not text:
            raise InvalidNameError("a mapping name cannot be empty")
        if len(text) > cls.MAX_LEN:
            raise InvalidNameError(
                f"mapping name of {len(text)} characters exceeds {cls.MAX_LEN}",
                win32_code=Win32Error.ERROR_FILENAME_EXCED_RANGE,
            )
        if "\x00" in text:
            raise InvalidNameError("a mapping name cannot contain NUL")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidNameError("a mapping name must be valid Unicode") from None
        scope: Scope = "local"
        base = text
        if text.startswith(_GLOBAL):
            scope, base = "global", text[len(_GLOBAL):]
        elif text.startswith(_LOCAL):
            base = text[len(_LOCAL):]
        elif text.startswith(_SESSION):
            raise InvalidNameError("the Session\\ namespace is reserved")
        if not base:
            raise InvalidNameError(f"mapping name {text!r} has nothing after its prefix")
        if "\\" in base:
            raise InvalidNameError(
                f"mapping name {text!r}: only Local\\ or Global\\ may precede a backslash",
                win32_code=Win32Error.ERROR_PATH_NOT_FOUND,
            )
        return cls(text=text, scope=scope, base=base)

    @property
    def key(self) -> str:
        """The file name of this object's record in its namespace directory."""
        return hashlib.sha256(self.base.encode("utf-8")).hexdigest() + ".map"

    def __str__(self) -> str:
        return self.text


def may_create_global() -> bool:
    """Whether this process may create objects in ``Global\\`` (root only)."""
    return os.geteuid() == 0


def namespace_for(scope: Scope, *, create: bool) -> Path:
    """The directory of one namespace, created and checked when ``create``.

    Raises OSAPIError when the directory is unsafe (not ours, a symlink, too
    open) or, with ``create=False``, missing.
    """
    if scope == "local":
        return runtime.namespace_dir("mappings", create=True)
    override = os.environ.get(runtime.ENV_RUNTIME_DIR)
    if override:
        base = runtime.user_runtime_dir(create=True) / "global"
        owner = os.geteuid()
    else:
        base = runtime.SYSTEM_RUNTIME_DIR
        owner = 0
    path = base / "mappings"
    if create and os.geteuid() == owner:
        ensure_private_directory(base, 0o755)
        ensure_private_directory(path, 0o755)
    else:
        check_directory(base, owner=owner, max_mode=0o755)
        check_directory(path, owner=owner, max_mode=0o755)
    return path


def is_missing(exc: OSAPIError) -> bool:
    return exc.errno == 2
