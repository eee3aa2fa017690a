#!/usr/bin/env bash
# Installs the pinned componentize-js under the SDK cache (once; later runs find it and do
# nothing) and prints the directory holding its node_modules. Fails if the install fails,
# leaving nothing half-installed behind.
set -euo pipefail
COMPONENTIZE_JS_VERSION=0.23.0
cache="${PGMORPH_SDK_CACHE:-$HOME/.cache/pgmorph-sdk}"
dir="$cache/js-$COMPONENTIZE_JS_VERSION"
if [ "${1:-}" = "--check" ]; then
    # Only says whether it is installed: prints the path and exits 0, or exits 1.
    [ -f "$dir/.installed" ] && echo "$dir" && exit 0
    exit 1
fi
if [ ! -f "$dir/.installed" ]; then
    echo "installing @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    echo '{"private": true}' > "$dir/package.json"
    if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2); then
        rm -rf "$dir"
        echo "installing componentize-js failed" >&2
        exit 1
    fi
    touch "$dir/.installed"
fi
echo "$dir"
