#!/usr/bin/env bash
# Builds a Python plugin into a pgmorph plugin component:
#   sdk-python/build.sh PLUGIN_DIR OUT.wasm
# PLUGIN_DIR holds `plugin.py`, which calls `pgmorph_plugin.export(MyPlugin)` (other modules
# beside it are bundled too). Uses the pinned componentize-py (installed by install.sh).
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2
    exit 2
fi
sdk="$(cd "$(dirname "$0")" && pwd)"
wit="$sdk/../wit/pgmorph-plugin-0.1.0"
plugin_dir="$(cd "$1" && pwd)"
out="$2"
[ -f "$plugin_dir/plugin.py" ] || { echo "$plugin_dir/plugin.py not found" >&2; exit 2; }
venv="$("$sdk/install.sh")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
# The app module: imports the plugin (which registers its class) and exports the adapter.
cat > "$stage/pgmorph_app.py" <<'PY'
import plugin  # noqa: F401  (calls pgmorph_plugin.export)
from pgmorph_plugin.guest import Transform  # noqa: F401
PY
"$venv/bin/componentize-py" -d "$wit" -w plugin componentize \
    -p "$stage" -p "$plugin_dir" -p "$sdk" pgmorph_app -o "$out"
