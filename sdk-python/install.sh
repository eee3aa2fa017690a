#!/usr/bin/env bash
# Installs the pinned componentize-py into a virtual environment under the SDK cache (once;
# later runs find it and do nothing) and prints the environment's path. Fails if the install
# fails, leaving nothing half-installed behind.
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
cache="${PGMORPH_SDK_CACHE:-$HOME/.cache/pgmorph-sdk}"
venv="$cache/py-$COMPONENTIZE_PY_VERSION"
if [ "${1:-}" = "--check" ]; then
    # Only says whether it is installed: prints the path and exits 0, or exits 1.
    [ -f "$venv/.installed" ] && echo "$venv" && exit 0
    exit 1
fi
if [ ! -f "$venv/.installed" ]; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! { python3 -m venv "$venv" &&
           "$venv/bin/pip" install --quiet --disable-pip-version-check \
               "componentize-py==$COMPONENTIZE_PY_VERSION" >&2; }; then
        rm -rf "$venv"
        echo "installing componentize-py failed" >&2
        exit 1
    fi
    touch "$venv/.installed"
fi
echo "$venv"
