#!/usr/bin/env bash
# Builds a JavaScript plugin into a pgmorph plugin component:
#   sdk-js/build.sh PLUGIN_DIR OUT.wasm
# PLUGIN_DIR holds `plugin.js`, whose default export is the plugin class; it imports the SDK as
# '@pgmorph/plugin' and may import other `.js` files beside it (`*.test.js` are left out). Uses
# the pinned componentize-js (installed by install.sh) with the WASI features the plugin
# sandbox does not offer (`http`, `fetch-event`) disabled: without that the component imports
# wasi:http, which pgmorph does not provide.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2
    exit 2
fi
sdk="$(cd "$(dirname "$0")" && pwd)"
wit="$sdk/../wit/pgmorph-plugin-0.1.0"
plugin_dir="$(cd "$1" && pwd)"
out="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
[ -f "$plugin_dir/plugin.js" ] || { echo "$plugin_dir/plugin.js not found" >&2; exit 2; }
tools="$("$sdk/install.sh")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
# The component resolves relative imports only: stage the SDK and the plugin side by side and
# point the plugin's '@pgmorph/plugin' imports at the staged SDK.
mkdir "$stage/pgmorph-plugin" "$stage/plugin"
cp "$sdk"/src/*.js "$stage/pgmorph-plugin/"
for f in "$plugin_dir"/*.js; do
    case "$f" in *.test.js) continue ;; esac
    sed -e "s#from '@pgmorph/plugin'#from '../pgmorph-plugin/index.js'#" \
        -e 's#from "@pgmorph/plugin"#from "../pgmorph-plugin/index.js"#' \
        "$f" > "$stage/plugin/$(basename "$f")"
done
cat > "$stage/app.js" <<'JS'
import PluginClass from './plugin/plugin.js';
import { transformFor } from './pgmorph-plugin/guest.js';

export const transform = transformFor(PluginClass);
JS
(cd "$stage" && node "$tools/node_modules/@bytecodealliance/componentize-js/src/cli.js" app.js \
    --wit "$wit" --world-name plugin --disable http fetch-event --out "$out")
