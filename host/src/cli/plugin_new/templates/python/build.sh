#!/usr/bin/env bash
# Builds this plugin into {{name}}.wasm with the pgmorph Python SDK (PGMORPH_SDK_PYTHON, else
# where `pgmorph plugin new` found it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sdk="${PGMORPH_SDK_PYTHON:-{{sdk_path}}}"
exec "$sdk/build.sh" "$here" "${1:-$here/{{name}}.wasm}"
