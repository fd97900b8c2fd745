"""Worker process for test_atoms_multiprocess.py (run with ``python _atom_worker.py``).

Talks to the test over stdin/stdout lines so that every wait has a timeout on
the test's side and nothing synchronises by sleeping.

Modes:
  stress INDEX ITERATIONS  print "ready", wait for "go", run the mixed
                           add/delete loop, print "done <recoveries>".
  hold NAME                add NAME but stop in the middle of the update
                           (after the first journaled write, lock held),
                           print "mid-update", then block until killed.
  add NAME...              add each NAME, print the atoms, exit.
  local NAME               add NAME to a local table, print the atom, exit.
"""

from __future__ import annotations

import sys

from aether.primitives.atoms import GlobalAtomTable, LocalAtomTable


def stress(table: GlobalAtomTable, index: int, iterations: int) -> None:
    """Per iteration: +1 "Shared" (-1 again on odd iterations), one own atom created
    and removed (churns slots and chains), "Keep-<index>" +1 every 1000."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit(3)
    shared = table.find("Shared")  # the test added it first, so it never reaches 0
    for k in range(iterations):
        table.add("shared" if k % 2 else "SHARED")
        own = table.add(f"own-{index}-{k % 7}")
        if k % 2:
            table.delete(shared)
        table.delete(own)
        if k % 1000 == 0:
            table.add(f"Keep-{index}")
    print(f"done {table.recoveries}", flush=True)


def hold(table: GlobalAtomTable, name: str) -> None:
    def stop(_what: str) -> None:
        print("mid-update", flush=True)
        sys.stdin.readline()  # never answered: we are killed here
        raise SystemExit(4)

    table._file_store.crash_hook = stop
    table.add(name)


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "local":
        print(LocalAtomTable().add(argv[1]), flush=True)
        return
    table = GlobalAtomTable()
    if mode == "stress":
        stress(table, int(argv[1]), int(argv[2]))
    elif mode == "hold":
        hold(table, argv[1])
    elif mode == "add":
        print(" ".join(str(table.add(name)) for name in argv[1:]), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
