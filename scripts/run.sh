#!/usr/bin/env bash
# The main job: install (into the project's .venv), then JupyterLab on the quickstart notebook with the embedded
# server (no account, no network: everything stays on this machine).
#   bash scripts/run.sh [jupyter lab options]
#   bash scripts/run.sh --check    # install, start JupyterLab, check that it serves the quickstart notebook and
#                                  # that its kernel loads the panel's front end, stop; exit 0 when all is well
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup.sh)"
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"   # the kernel and `vdbnb-recorder` come from it
if [ "${1:-}" = "--check" ]; then
  exec "$PY" scripts/check_lab.py
fi
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)   # JupyterLab refuses root without it
exec "$PY" -m jupyter lab notebooks/01-quickstart.ipynb "${extra[@]}" "$@"
