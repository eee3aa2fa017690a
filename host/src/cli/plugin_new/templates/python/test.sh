#!/usr/bin/env bash
# Runs the plugin's unit tests natively with the pgmorph Python SDK (PGMORPH_SDK_PYTHON, else
# where `pgmorph plugin new` found it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sdk="${PGMORPH_SDK_PYTHON:-{{sdk_path}}}"
cd "$here"
PYTHONPATH="$sdk${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    exec python3 -m unittest discover -v -s "$here"
