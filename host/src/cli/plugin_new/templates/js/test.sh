#!/usr/bin/env bash
# Runs the plugin's unit tests natively: links the pgmorph JavaScript SDK (PGMORPH_SDK_JS, else
# where `pgmorph plugin new` found it) as node_modules/@pgmorph/plugin, then `node --test`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sdk="${PGMORPH_SDK_JS:-{{sdk_path}}}"
mkdir -p "$here/node_modules/@pgmorph"
ln -sfn "$sdk" "$here/node_modules/@pgmorph/plugin"
cd "$here"
exec node --test
