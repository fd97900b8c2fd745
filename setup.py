"""The one thing pyproject.toml cannot yet say without an experimental table:
the mapping transport's ring hot paths in C (src/aether/wire/_ringc.c says
why). Optional: without a compiler pip installs the package without it, and
aether.wire.rings runs the same logic in Python, slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aether.wire._ringc",
            ["src/aether/wire/_ringc.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        )
    ]
)
