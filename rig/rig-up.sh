#!/usr/bin/env bash
# vdbnb's test rig: a virtual desktop with two screens, a microphone and system audio, on a headless Linux box.
#
#   source rig/rig-up.sh          # brings it up (idempotent) and exports the variables below into this shell
#   eval "$(bash rig/rig-up.sh)"  # the same from a script that cannot `source` (prints `export K=V` lines)
#   bash rig/rig-down.sh          # stops what rig-up started (by recorded pids; see rig-down.sh)
#   bash rig/rig-up.sh --missing  # only prints the Debian packages it would install
#
# What it gives (see rig/README.md):
#   X      Xorg + dummy driver on $RIG_DISPLAY (default :97), two 1920x1080 outputs side by side
#          (DUMMY0 at 0,0 primary; DUMMY1 at 1920,0) and openbox (window titles, _NET_ACTIVE_WINDOW).
#   audio  PulseAudio (user mode, no dbus): default sink `system_out` (its monitor = system audio),
#          sink `mic_feed` feeding the default source `virtual_mic` (the microphone); a silent player keeps
#          each sink running. ALSA -> pulse through ALSA_CONFIG_PATH (a user's ~/.asoundrc is never written).
#   tools  espeak-ng, sox, xterm, xdotool.
# Exports DISPLAY, PULSE_SERVER, XDG_RUNTIME_DIR (if unset), ALSA_CONFIG_PATH, RIG_DISPLAY, RIG_DIR and
# RIG_STARTED (the parts THIS call started: empty when everything was already up; rig-down uses it).
#
# Debian packages it needs are installed when missing, as root or with working non-interactive sudo;
# otherwise it stops and prints the exact `sudo apt-get install ...` line.

# This file is sourced: the caller's shell options are saved and restored (it may run under `set -eu`), no
# `exit`; every helper is prefixed _rig and unset at the end.
_rig_opts="$(set +o)"
set +eu
_rig_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_rig_log() { echo "[rig] $*" >&2; }

_rig_main() {
  RIG_DISPLAY="${RIG_DISPLAY:-:97}"
  case "$RIG_DISPLAY" in :[0-9]*) ;; *) _rig_log "RIG_DISPLAY must look like :97, not '$RIG_DISPLAY'"; return 2;; esac
  RIG_DIR="${RIG_DIR:-${TMPDIR:-/tmp}/vdbnb-rig${RIG_DISPLAY#:}}"
  if [ -e "$RIG_DIR" ] && [ ! -O "$RIG_DIR" ]; then
    _rig_log "$RIG_DIR belongs to another user (their rig on $RIG_DISPLAY): pick another RIG_DISPLAY"
    return 2
  fi
  if [ ! -d "$RIG_DIR" ]; then   # made here: rig-down removes it once nothing of the rig runs any more
    mkdir -p "$RIG_DIR" && chmod 700 "$RIG_DIR" && : >"$RIG_DIR/.made-by-rig-up" || return 2
  fi
  RIG_STARTED=""

  _rig_packages || return $?

  # ---------- X: two 1920x1080 outputs ----------
  export DISPLAY="$RIG_DISPLAY"
  if ! xdpyinfo >/dev/null 2>&1; then
    local n="${RIG_DISPLAY#:}"
    if [ -e "/tmp/.X${n}-lock" ]; then
      local owner; owner="$(tr -dc 0-9 <"/tmp/.X${n}-lock" 2>/dev/null)"
      if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
        _rig_log "display $RIG_DISPLAY is held by pid $owner but does not answer: pick another RIG_DISPLAY"
        return 2
      fi
      rm -f "/tmp/.X${n}-lock" "/tmp/.X11-unix/X${n}" 2>/dev/null   # stale, left by a crashed server
    fi
    Xorg "$RIG_DISPLAY" -noreset -nolisten tcp -novtswitch -keeptty -config "$_rig_here/xorg-dummy.conf" \
         -logfile "$RIG_DIR/xorg.log" </dev/null >/dev/null 2>&1 &
    _rig_record xorg $!
    local _
    for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
    if ! xdpyinfo >/dev/null 2>&1; then
      _rig_log "Xorg did not start on $RIG_DISPLAY; its log: $RIG_DIR/xorg.log"
      tail -5 "$RIG_DIR/xorg.log" 2>/dev/null | sed 's/^/[rig]   /' >&2
      return 1
    fi
    xrandr --output DUMMY0 --mode 1920x1080 --pos 0x0 --primary >/dev/null 2>&1
    xrandr --addmode DUMMY1 1920x1080 >/dev/null 2>&1
    xrandr --output DUMMY1 --mode 1920x1080 --right-of DUMMY0 >/dev/null 2>&1
  fi
  if [ "$(xrandr --listmonitors 2>/dev/null | head -1)" != "Monitors: 2" ]; then
    _rig_log "display $RIG_DISPLAY does not show two monitors: $(xrandr --listmonitors 2>&1 | head -1)"
    return 1
  fi
  # a window manager: titles and _NET_ACTIVE_WINDOW (xprop exits 0 once one has set _NET_SUPPORTING_WM_CHECK)
  if ! xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q "window id"; then
    openbox </dev/null >/dev/null 2>&1 &
    _rig_record openbox $!
    for _ in $(seq 50); do xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q "window id" && break; sleep 0.1; done
  fi

  # ---------- audio ----------
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$RIG_DIR/xdg}"
  [ -d "$XDG_RUNTIME_DIR" ] || { mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"; }
  export PULSE_SERVER="unix:$RIG_DIR/pulse.sock"
  if ! pactl info >/dev/null 2>&1; then
    sed "s|@SOCKET@|$RIG_DIR/pulse.sock|" "$_rig_here/rig.pa" >"$RIG_DIR/rig.pa"
    rm -f "$RIG_DIR/pulse.sock"
    # its own HOME and runtime dir (cookie, state, sockets), so it neither writes into the user's ~/.config/pulse
    # nor meets a desktop's (or another rig's) PulseAudio there ("Daemon already running")
    mkdir -p "$RIG_DIR/pulse-home" "$RIG_DIR/pulse-run" && chmod 700 "$RIG_DIR/pulse-run"
    HOME="$RIG_DIR/pulse-home" XDG_RUNTIME_DIR="$RIG_DIR/pulse-run" pulseaudio -n -F "$RIG_DIR/rig.pa" \
      --use-pid-file=no --exit-idle-time=-1 --daemonize=no --disallow-exit --log-target=file:"$RIG_DIR/pulse.log" \
      </dev/null >/dev/null 2>&1 &
    _rig_record pulse $!
    for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
    if ! pactl info >/dev/null 2>&1; then
      _rig_log "PulseAudio did not start; its log: $RIG_DIR/pulse.log"
      tail -5 "$RIG_DIR/pulse.log" 2>/dev/null | sed 's/^/[rig]   /' >&2
      return 1
    fi
  fi
  # keep both sinks running: a suspended null sink delivers nothing to its monitor at first
  local s
  for s in system_out mic_feed; do
    if ! _rig_alive "keepalive-$s"; then
      pacat --playback --device="$s" --format=s16le --rate=48000 --channels=2 /dev/zero </dev/null >/dev/null 2>&1 &
      _rig_record "keepalive-$s" $!
    fi
  done
  # sound flows end to end before the rig says "up" (a tone played into each sink is heard on its source), so
  # that no test starts on a sound path that is not flowing yet. Probed only when this call started the sound
  # server or a keep-alive: a rig in use is never probed (the tone would land in someone's recording).
  case " $RIG_STARTED " in
    *" pulse "*|*" keepalive-"*)
      _rig_wait_flowing mic_feed virtual_mic && _rig_wait_flowing system_out system_out.monitor || return 1;;
  esac
  # ALSA -> pulse for PortAudio (sounddevice): the distribution's config, then the rig's defaults
  local sys_conf="${ALSA_SYSTEM_CONFIG:-/usr/share/alsa/alsa.conf}"
  if [ -f "$sys_conf" ]; then
    export ALSA_CONFIG_PATH="$sys_conf:$_rig_here/asound.conf"
  else
    export ALSA_CONFIG_PATH="$_rig_here/asound.conf"
  fi

  export RIG_DISPLAY RIG_DIR RIG_STARTED
  _rig_log "up: DISPLAY=$DISPLAY PULSE_SERVER=$PULSE_SERVER (started:${RIG_STARTED:- nothing, already up})"
}

# ---------- audio probe ----------
_rig_flows() {   # $1 sink, $2 source: true when a tone played into the sink comes out of the source
  # parec with a short fragment (its default is seconds: the tone would still sit in the server when it stops);
  # pacat returns once the tone was played into the sink, then the recording gets 0.5 s more
  local raw="$RIG_DIR/probe-$2.raw" rec peak
  parec --device="$2" --format=s16le --rate=16000 --channels=1 --latency-msec=20 --raw >"$raw" 2>/dev/null &
  rec=$!
  sleep 0.2
  sox -q -n -t raw -r 48000 -e signed -b 16 -c 2 - synth 0.3 sine 1000 vol 0.5 2>/dev/null |
    pacat --device="$1" --format=s16le --rate=48000 --channels=2 --latency-msec=50 --raw >/dev/null 2>&1
  sleep 0.5
  kill "$rec" 2>/dev/null
  wait "$rec" 2>/dev/null
  peak="$(sox -t raw -r 16000 -e signed -b 16 -c 1 "$raw" -n stat 2>&1 | awk '/^Maximum amplitude/ {print $3}')"
  rm -f "$raw"
  awk -v p="${peak:-0}" 'BEGIN { exit !(p > 0.1) }'
}

_rig_wait_flowing() {   # $1 sink, $2 source: waits (up to 60 s: a loaded box) until sound flows through them
  local i
  for i in $(seq 60); do
    _rig_flows "$1" "$2" && { [ "$i" = 1 ] || _rig_log "sound flows $1 -> $2 (after $i probes)"; return 0; }
    sleep 0.4
  done
  _rig_log "a tone played into $1 never came out of $2 (60 probes); PulseAudio's log: $RIG_DIR/pulse.log"
  tail -5 "$RIG_DIR/pulse.log" 2>/dev/null | sed 's/^/[rig]   /' >&2
  return 1
}

# ---------- Debian packages ----------
_rig_missing() {   # prints the Debian packages the rig needs that are not installed (one line, maybe empty)
  # command -> Debian package providing it (and the libraries/fonts the tests load)
  local need="Xorg:xserver-xorg-core xdpyinfo:x11-utils xprop:x11-utils xrandr:x11-xserver-utils
    xdotool:xdotool openbox:openbox xterm:xterm pulseaudio:pulseaudio pactl:pulseaudio-utils
    pacat:pulseaudio-utils paplay:pulseaudio-utils espeak-ng:espeak-ng sox:sox"
  local files="/usr/lib/xorg/modules/drivers/dummy_drv.so:xserver-xorg-video-dummy
    /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core"
  local missing="" item
  for item in $need; do command -v "${item%%:*}" >/dev/null 2>&1 || missing="$missing ${item#*:}"; done
  for item in $files; do [ -e "${item%%:*}" ] || missing="$missing ${item#*:}"; done
  if command -v dpkg-query >/dev/null 2>&1; then
    local p
    for p in libasound2-plugins libportaudio2; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
  fi
  echo $missing | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ $//'
}

_rig_packages() {
  local missing
  missing="$(_rig_missing)"
  [ -z "$missing" ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      _rig_log "the rig needs Debian packages that are not installed. Run:"
      echo "sudo apt-get install -y --no-install-recommends $missing" >&2
      return 3
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _rig_log "the rig needs: $missing (Debian package names; install the equivalents with your package manager)"
    return 3
  fi
  _rig_log "installing: $missing"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    { _rig_log "apt-get install failed: $missing"; return 3; }
}

# ---------- pid bookkeeping: "<pid> <start time>" so a recycled pid is never taken for ours ----------
_rig_starttime() { awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }
_rig_record() {
  echo "$2 $(_rig_starttime "$2")" >"$RIG_DIR/$1.pid"
  RIG_STARTED="${RIG_STARTED:+$RIG_STARTED }$1"
}
_rig_alive() {
  local pid st
  [ -f "$RIG_DIR/$1.pid" ] && read -r pid st <"$RIG_DIR/$1.pid" || return 1
  [ -n "$pid" ] && [ "$(_rig_starttime "$pid")" = "$st" ]
}

if [ "${1:-}" = "--missing" ]; then   # `bash rig/rig-up.sh --missing`: list what apt would install, start nothing
  _rig_missing
  _rig_rc=0
  RIG_STARTED=""
else
  _rig_main
  _rig_rc=$?
fi
unset -f _rig_main _rig_missing _rig_packages _rig_starttime _rig_record _rig_alive _rig_log _rig_flows \
  _rig_wait_flowing
unset _rig_here
eval "$_rig_opts"; unset _rig_opts
if [ "${BASH_SOURCE[0]}" = "$0" ]; then   # executed, not sourced: print the variables for eval
  if [ $_rig_rc = 0 ] && [ "${1:-}" != "--missing" ]; then
    for _rig_v in DISPLAY PULSE_SERVER XDG_RUNTIME_DIR ALSA_CONFIG_PATH RIG_DISPLAY RIG_DIR RIG_STARTED; do
      printf 'export %s=%q\n' "$_rig_v" "${!_rig_v}"
    done
  fi
  exit $_rig_rc
fi
return $_rig_rc 2>/dev/null || true
