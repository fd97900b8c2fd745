"""Parse ``/proc/<pid>/maps`` and check that a range lies in one private
anonymous, non-executable mapping.

The check is hygiene, not the security boundary: the client could remap the
range after the check. The boundary is the ``/proc/<pid>/mem`` descriptor
(bound to the client's own address space) and the registered ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._libc import translate


@dataclass(frozen=True, slots=True)
class MemoryMapping:
    """One line of ``/proc/<pid>/maps``."""

    start: int
    end: int
    perms: str  # e.g. "rw-p"
    offset: int
    device: str
    inode: int
    path: str

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        return self.perms[2] == "x"

    @property
    def private(self) -> bool:
        return self.perms[3] == "p"

    @property
    def anonymous(self) -> bool:
        # Anonymous mappings have inode 0 and no path; [heap]/[stack] are
        # anonymous too but never what a client allocated for a block.
        return self.inode == 0 and self.path == ""

    def contains(self, address: int, size: int) -> bool:
        return self.start <= address and address + size <= self.end


def parse_maps(text: str) -> list[MemoryMapping]:
    """Parse the text of a maps file. Malformed lines raise ValueError."""
    out: list[MemoryMapping] = []
    for line in text.splitlines():
        if not line:
            continue
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            raise ValueError(f"malformed maps line: {line!r}")
        span, perms, offset, device, inode = parts[:5]
        path = parts[5].strip() if len(parts) == 6 else ""
        lo, _, hi = span.partition("-")
        out.append(
            MemoryMapping(
                int(lo, 16), int(hi, 16), perms, int(offset, 16), device, int(inode), path
            )
        )
    return out


def read_maps(pid: int) -> list[MemoryMapping]:
    """Read and parse ``/proc/<pid>/maps``."""
    try:
        with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as fh:
            return parse_maps(fh.read())
    except OSError as exc:
        raise translate(exc, f"read /proc/{pid}/maps") from None


def mappings_covering(
    mappings: Iterable[MemoryMapping], address: int, size: int
) -> list[MemoryMapping]:
    """The mappings that overlap [address, address+size), in address order."""
    end = address + size
    return [m for m in mappings if m.start < end and address < m.end]
