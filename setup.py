"""The one thing pyproject.toml cannot yet say without an experimental table:
the C extensions. src/aether/wire/_ringc.c holds the mapping transport's
ring hot paths, src/aether/wire/_crccopy.c a copy and CRC-32 in one pass
(each file says why it is in C). Both are optional: without a compiler pip
installs the package without them, and aether.wire.rings and aether.wire.crc
run the same logic in Python, slower."""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            f"aether.wire.{name}",
            [f"src/aether/wire/{name}.c"],
            optional=True,
            extra_compile_args=_FLAGS,
        )
        for name in ("_ringc", "_crccopy")
    ]
)
