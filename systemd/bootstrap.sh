#!/usr/bin/env bash
# Installs everything hsmfs + archived need on a Debian 12 machine (as root), into a
# virtual environment at .venv of this checkout, then runs one job:
#   bootstrap.sh run    hsmfs on the embedded default (a local directory as the object store)
#                       plus archived listening for DICOM, in the foreground
#   bootstrap.sh test   the static checks (ruff, ruff format, mypy), then the whole test suite
#   bootstrap.sh check  the static checks alone
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc pkg-config fuse3 libfuse3-dev dcmtk attr systemd)
VENV=${HSM_VENV:-.venv}

install_system_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_python_packages() {
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e '.[test]'
}

install_system_packages
install_python_packages
# Appended, not prepended: pynetdicom's console scripts (storescp, storescu, ...) must not
# shadow DCMTK's tools of the same names.
export PATH="$PATH:$PWD/$VENV/bin"
PYTHON="$PWD/$VENV/bin/python"

static_checks() {
    echo "bootstrap: ruff check, ruff format --check, mypy"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"  # files and settings: [tool.mypy] in pyproject.toml
}

case "${1:-}" in
    run)
        shift
        exec "$PYTHON" -m archived.quickstart "$@"
        ;;
    check)
        static_checks
        ;;
    test)
        shift
        static_checks
        # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
        exec "$PYTHON" -m pytest "$@"
        ;;
    *)
        echo "usage: $0 run|test|check [ARGS...]" >&2
        exit 2
        ;;
esac
