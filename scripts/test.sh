#!/usr/bin/env bash
# Installs what the tests need, brings up the rig (two X screens, a mic, system audio), runs the suite.
# Usage: bash scripts/test.sh [pytest args]      (this is exactly what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# the repository's rig (rig/): brought up on $RIG_DISPLAY (default :97), or reused if it is already up there
# shellcheck disable=SC1091
source rig/rig-up.sh
rig_started="$RIG_STARTED"      # empty when it was already up: then it is not ours to stop
trap '[ -z "$rig_started" ] || RIG_STARTED="$rig_started" bash rig/rig-down.sh >/dev/null 2>&1 || true' EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -m ruff check vdbnb tests bench rig
python3 -m pytest -p no:cacheprovider --durations=15 "$@"
