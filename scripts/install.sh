#!/usr/bin/env bash
# Install Aether into ./.venv with the given extras (e.g. "test", "gui,test").
#
#   bash scripts/install.sh            # the package: enough for `aether demo`
#   bash scripts/install.sh test       # plus what the test suite needs
#   bash scripts/install.sh test,bench # plus the peers `aether bench` measures
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
# The mapping transport's ring extension (src/aether/wire/_ringc.c) is
# compiled at install: a C compiler and the interpreter's headers. Without
# them pip still installs the package, with the slower Python rings.
if ! command -v cc >/dev/null 2>&1; then
    need_apt+=(gcc)
fi
if ! "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    need_apt+=(python3-dev)
fi
# Debian packages per extra (added as extras grow).
case ",$extras," in
    *,test,*) ;;
esac
# Guard: the tests check generated units with systemd-analyze; the benchmark runs AIDE.
case ",$extras," in
    *,test,*) command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd) ;;
esac
# bench: AIDE for the Guard benchmark, dbus-daemon for the private bus of the dbus-fast peer
case ",$extras," in
    *,bench,*)
        command -v aide >/dev/null 2>&1 || need_apt+=(aide)
        command -v dbus-daemon >/dev/null 2>&1 || need_apt+=(dbus)
        ;;
esac
# Qt (the gui extra; the test extra runs the GUI's tests offscreen): the
# libraries PySide6's wheels link against that a minimal Debian lacks
# (checked with ldd on QtWidgets and the offscreen and xcb platform plugins),
# a font, and Xvfb for screenshots of a real X11 window.
case ",$extras," in
    *,test,*|*,gui,*)
        need_apt+=(libgl1 libegl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3
                   libxkbcommon0 fonts-dejavu-core) ;;
esac
case ",$extras," in
    *,gui,*)
        need_apt+=(libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
                   libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0
                   libxcb-xfixes0 libxcb-xkb1 libx11-xcb1 xvfb) ;;
esac
# Only what is missing: no apt-get (nor root) needed when all is there.
if ((${#need_apt[@]})) && command -v dpkg-query >/dev/null; then
    missing=()
    for pkg in "${need_apt[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$pkg")
        fi
    done
    need_apt=("${missing[@]}")
fi
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
