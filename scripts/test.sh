#!/usr/bin/env bash
# Installs what the tests need (into the project's .venv), brings up the rig (two X screens, a microphone,
# system audio: rig/), runs the suite. This is exactly what CI runs.
#   bash scripts/test.sh [pytest args]       e.g. bash scripts/test.sh tests/server -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup.sh --test)"
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
[ -f .venv/.vdbnb-chromium ] && export VDBNB_CHROMIUM="${VDBNB_CHROMIUM:-$(cat .venv/.vdbnb-chromium)}"
# the rig, on $RIG_DISPLAY (default :97): reused if it is already up there, and then not ours to stop
# shellcheck disable=SC1091
source rig/rig-up.sh
rig_started="$RIG_STARTED"
trap '[ -z "$rig_started" ] || RIG_STARTED="$rig_started" bash rig/rig-down.sh >/dev/null 2>&1 || true' EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" -m ruff check vdbnb tests bench rig testkit
"$PY" -m pytest -p no:cacheprovider --durations=15 "$@"
