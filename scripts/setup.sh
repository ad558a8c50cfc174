#!/usr/bin/env bash
# Creates ./.venv with jeisson installed from this checkout (a real install,
# not an editable one, so twistd finds the plugins as a user's would).
#   bash scripts/setup.sh          the programs
#   bash scripts/setup.sh --test   the programs and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "jeisson needs Python 3.11 or newer; '$PYTHON' is not (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        # Debian ships venv's ensurepip separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing Debian's python3-venv" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "'$PYTHON -m venv' failed: install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
if [ "${1:-}" = "--test" ]; then
    # What the tests run besides Python: a real browser for the dashboard,
    # and the AVR toolchain, the Arduino core and simavr for the firmware.
    debs="chromium chromium-driver gcc-avr avr-libc arduino-core-avr libsimavr-dev simavr libelf-dev pkg-config make"
    missing=""
    for deb in $debs; do
        dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing="$missing $deb"
    done
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing Debian's$missing" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
        else
            echo "the tests need Debian's$missing: run as root, or sudo apt-get install$missing" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check ".$extras"
# The same version number from a changed checkout: make sure it is this one.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps .
