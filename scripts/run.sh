#!/usr/bin/env bash
# Installs vdbnb and opens JupyterLab on the quickstart notebook, with the embedded server (no account,
# no network: everything stays on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)   # JupyterLab refuses root without it
exec python3 -m jupyter lab notebooks/01-quickstart.ipynb "${extra[@]}" "$@"
