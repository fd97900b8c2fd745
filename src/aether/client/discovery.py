"""Finding services: from a name to a socket path, and listing what is visible."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aether import runtime
from aether.errors import ConnectError


@dataclass(frozen=True)
class ServiceAddress:
    """A service's control socket and who must own the service."""

    name: str
    path: Path
    scope: str  # "system" or "user"

    @property
    def expected_uid(self) -> int:
        return 0 if self.scope == "system" else os.geteuid()


def resolve(target: str | os.PathLike[str]) -> ServiceAddress:
    """Turn a service name or a socket path into an address.

    A bare name looks in the user's runtime directory first, then in
    ``/run/aether``. A path is used as given; its scope follows its
    directory (``/run/aether`` is system, anything else user).
    """
    text = os.fspath(target)
    if "/" in text:
        path = Path(text)
        # An explicit path is trusted by its directory's owner: root (a
        # system service) or ourselves (a user service).
        try:
            owner = os.lstat(path.parent).st_uid
        except OSError as exc:
            raise ConnectError(f"{path.parent}: {exc.strerror}", path=text) from None
        scope = "system" if owner == 0 else "user"
        return ServiceAddress(path.stem, path, scope)
    if not text or not all(c.isalnum() or c in "-_." for c in text):
        raise ConnectError(f"bad service name {text!r}")
    try:
        user_path = runtime.user_runtime_dir(create=False) / f"{text}.ctl"
    except Exception:
        user_path = None
    if user_path is not None and _is_socket(user_path):
        return ServiceAddress(text, user_path, "user")
    system_path = runtime.SYSTEM_RUNTIME_DIR / f"{text}.ctl"
    if _is_socket(system_path):
        return ServiceAddress(text, system_path, "system")
    where = [str(system_path)] + ([str(user_path)] if user_path else [])
    raise ConnectError(f"no service named {text!r} (looked for {' and '.join(where)})",
                       path=str(system_path))


def visible_services() -> list[ServiceAddress]:
    """Every control socket in the system and the user's runtime directories."""
    found: list[ServiceAddress] = []
    dirs: list[tuple[Path, str]] = [(runtime.SYSTEM_RUNTIME_DIR, "system")]
    try:
        dirs.append((runtime.user_runtime_dir(create=False), "user"))
    except Exception:
        pass
    for directory, scope in dirs:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix == ".ctl" and _is_socket(entry):
                found.append(ServiceAddress(entry.stem, entry, scope))
    return found


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
