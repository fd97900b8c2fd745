"""In-process storage for a local atom table.

A local table belongs to one process and dies with it [1.34], so it is plain
Python data behind a ``threading.Lock``. It is organised in ``buckets`` hash
chains like Windows' (default 37 [1.30]); the hash is Wine's, the XOR over
``i`` of ``toupper(ch[i]) + i`` [1.33]. New atoms take the lowest free slot
[1.22].
"""

from __future__ import annotations

import heapq
import operator
import threading
from functools import reduce

from aether.errors import InvalidHandleError, InvalidParameterError

from ._atom_names import MAX_STRING_ATOMS, AtomName, AtomTableFullError, fold

DEFAULT_BUCKETS = 37
MAX_BUCKETS = 0xFFFF
MAX_REFCOUNT = 0xFFFFFFFF


def wine_hash(key: str) -> int:
    """Wine's atom hash of an already upper-cased name."""
    return reduce(operator.xor, map(operator.add, map(ord, key), range(len(key))), 0)


class MemoryAtomStore:
    """String atoms of one process; indices are slots (atom = 0xC000 + slot)."""

    def __init__(self, buckets: int = DEFAULT_BUCKETS) -> None:
        if isinstance(buckets, bool) or not isinstance(buckets, int):
            raise InvalidParameterError("buckets must be an int")
        if not 1 <= buckets <= MAX_BUCKETS:
            raise InvalidParameterError(f"buckets must be 1-{MAX_BUCKETS}, not {buckets}")
        self.buckets = buckets
        self._chains: list[dict[str, int]] = [{} for _ in range(buckets)]
        self._names: list[str | None] = []
        self._refcounts: list[int] = []
        self._free: list[int] = []  # heap of freed slots below len(self._names)
        self._lock = threading.Lock()

    def _chain(self, key: str) -> dict[str, int]:
        return self._chains[wine_hash(key) % self.buckets]

    def _check(self, index: int) -> str:
        if 0 <= index < len(self._names):
            name = self._names[index]
            if name is not None:
                return name
        raise InvalidHandleError(f"atom {0xC000 + index:#x} is not in the table")

    def add(self, name: AtomName) -> int:
        with self._lock:
            chain = self._chain(name.key)
            index = chain.get(name.key)
            if index is not None:
                if self._refcounts[index] >= MAX_REFCOUNT:
                    raise InvalidParameterError(f"atom {0xC000 + index:#x}: reference count full")
                self._refcounts[index] += 1
                return index
            if self._free:
                index = heapq.heappop(self._free)
                self._names[index] = name.text
                self._refcounts[index] = 1
            elif len(self._names) < MAX_STRING_ATOMS:
                index = len(self._names)
                self._names.append(name.text)
                self._refcounts.append(1)
            else:
                raise AtomTableFullError(f"the local atom table holds {MAX_STRING_ATOMS} atoms")
            chain[name.key] = index
            return index

    def find(self, key: str) -> int | None:
        with self._lock:
            return self._chain(key).get(key)

    def delete(self, index: int, expect_key: str | None = None) -> int:
        with self._lock:
            text = self._check(index)
            key = fold(text)
            if expect_key is not None and key != expect_key:
                raise InvalidHandleError(f"atom {0xC000 + index:#x} now names another string")
            self._refcounts[index] -= 1
            left = self._refcounts[index]
            if left == 0:
                del self._chain(key)[key]
                self._names[index] = None
                heapq.heappush(self._free, index)
            return left

    def query(self, index: int) -> tuple[str, int]:
        with self._lock:
            return self._check(index), self._refcounts[index]

    def snapshot(self) -> list[tuple[int, str, int]]:
        with self._lock:
            return [
                (i, name, self._refcounts[i])
                for i, name in enumerate(self._names)
                if name is not None
            ]

    def count(self) -> int:
        with self._lock:
            return len(self._names) - len(self._free)
