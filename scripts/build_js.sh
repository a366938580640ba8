#!/usr/bin/env bash
# Build the notebook widgets' front end: js/ -> vdbnb/widgets/static/{panel.js,panel.css}.
# Uses the exact esbuild version pinned in js/package.json + js/package-lock.json (npm registry only).
set -euo pipefail
cd "$(dirname "$0")/../js"
if [ ! -x node_modules/.bin/esbuild ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
ls -l ../vdbnb/widgets/static/panel.js ../vdbnb/widgets/static/panel.css
