#!/usr/bin/env bash
# Builds this plugin into {{name}}.wasm with the pgmorph JavaScript SDK (PGMORPH_SDK_JS, else
# where `pgmorph plugin new` found it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sdk="${PGMORPH_SDK_JS:-{{sdk_path}}}"
exec "$sdk/build.sh" "$here" "${1:-$here/{{name}}.wasm}"
