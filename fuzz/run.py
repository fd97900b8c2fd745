"""Run one harness under atheris: ``python fuzz/run.py NAME [libFuzzer options]``.

Only Aether's own modules (and the harness) are instrumented for coverage:
instrumenting the whole interpreter costs minutes at start-up and guides
the fuzzer into the standard library instead of our parsers.
"""

from __future__ import annotations

import importlib
import sys

import _paths  # noqa: F401
import atheris  # the fuzz extra (bash scripts/install.sh test,fuzz)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: run.py {wire,states,schema,rings,names} [libFuzzer options]")
    name = sys.argv.pop(1)
    with atheris.instrument_imports(include=["aether", "aether_guard", "wire_helpers",
                                             f"fuzz_{name}"]):
        module = importlib.import_module(f"fuzz_{name}")
    atheris.Setup(sys.argv, module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
