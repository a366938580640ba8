#!/usr/bin/env bash
# Installs what the tests need, brings up the rig (two X screens, a mic, system audio), runs the suite.
# Usage: bash scripts/test.sh [pytest args]      (this is exactly what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
RIG="${VDBNB_RIG:-$(cd .. && pwd)/shared/rig}"
[ -f "$RIG/rig-up.sh" ] || { echo "rig not found at $RIG (set VDBNB_RIG)" >&2; exit 1; }
export VDBNB_RIG="$RIG"
# shellcheck disable=SC1091
source "$RIG/rig-up.sh"
trap 'bash "$RIG/rig-down.sh" >/dev/null 2>&1 || true' EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -m ruff check vdbnb tests bench
python3 -m pytest -p no:cacheprovider --durations=15 "$@"
