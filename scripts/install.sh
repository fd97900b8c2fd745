#!/usr/bin/env bash
# Install Aether into ./.venv with the given extras (e.g. "test", "gui,test").
#
#   bash scripts/install.sh            # the package: enough for `aether demo`
#   bash scripts/install.sh test       # plus what the test suite needs
#
# Works on a fresh Debian (Python 3.11) as root: Debian packages that an
# extra needs are installed with apt-get; Python packages with pip into the
# virtual environment, never into the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

need_apt=()
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_apt+=(python3-venv)
fi
# Debian packages per extra (added as extras grow).
case ",$extras," in
    *,test,*) ;;
esac
# Guard: the tests check generated units with systemd-analyze; the benchmark runs AIDE.
case ",$extras," in
    *,test,*) command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd) ;;
esac
case ",$extras," in
    *,bench,*) command -v aide >/dev/null 2>&1 || need_apt+=(aide) ;;
esac
if ((${#need_apt[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: please install as root: apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
spec="."
if [ -n "$extras" ]; then
    spec=".[$extras]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
