#!/usr/bin/env bash
# Build the C extensions (src/aether/wire/_ringc.c, the rings, and
# _crccopy.c, the fused copy and crc of Loan.write) with AddressSanitizer
# and UndefinedBehaviorSanitizer in a scratch copy of the tree, and run the
# tests that drive them (the ring tests, the hostile and adversarial mapping
# tests, the conformance suite: real services and clients as subprocesses,
# which load the same sanitized build). Any out-of-bounds access or
# undefined behaviour aborts the process that hit it, so the run fails.
#
#   bash scripts/sanitize-rings.sh             # after bash scripts/install.sh test
#   bash scripts/sanitize-rings.sh -k crc      # extra pytest arguments
#
# Needs gcc with libasan (Debian: gcc pulls it in). The checkout and its
# .venv are left as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
command -v "$python" >/dev/null || { echo "sanitize-rings.sh: run bash scripts/install.sh test first" >&2; exit 1; }
case "$python" in  # the tests run from the scratch copy: a relative path would not resolve there
    /*) ;;
    */*) python="$PWD/$python" ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r src tests fuzz pyproject.toml "$scratch"/
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
for name in _ringc _crccopy; do
    rm -f "$scratch"/src/aether/wire/$name*.so
    gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror \
        -fPIC -shared -I"$include" "src/aether/wire/$name.c" \
        -o "$scratch/src/aether/wire/$name$suffix"
done

export LD_PRELOAD
LD_PRELOAD=$(gcc -print-file-name=libasan.so)
# Python's own allocations are not ours to judge (leaks at exit are normal).
# Reports go to files: pytest captures the stderr of a process that aborts.
export ASAN_OPTIONS="detect_leaks=0:log_path=$scratch/sanitizer"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$scratch/sanitizer"
export PYTHONPATH="$scratch/src"
cd "$scratch"
"$python" -c 'import aether.wire.rings as r, aether.wire._crccopy as c, sys; sys.exit(0 if r.NATIVE and r.__file__.startswith(sys.argv[1]) and c.__file__.startswith(sys.argv[1]) else "the sanitized build was not the one loaded")' "$scratch"
status=0
"$python" -m pytest -q -p no:cacheprovider \
    tests/wire/test_rings.py tests/wire/test_rings_native.py tests/wire/test_crccopy.py tests/transport \
    tests/adversarial/test_adv_mapping.py tests/adversarial/test_adv_fuzz.py \
    tests/e2e/test_mapping_short_path.py tests/conformance "$@" || status=$?
if compgen -G "$scratch/sanitizer.*" >/dev/null; then
    echo "sanitize-rings.sh: sanitizer reports:" >&2
    cat "$scratch"/sanitizer.* >&2
    status=1
fi
exit "$status"
