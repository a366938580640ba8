#!/usr/bin/env bash
# Stops the rig's processes, by the pids rig-up.sh recorded in $RIG_DIR (never by name).
#   bash rig/rig-down.sh              # with RIG_STARTED set (rig-up exports it): only the parts that call
#                                     # of rig-up started; empty = nothing (it found the rig already up)
#   RIG_STARTED=all bash rig/rig-down.sh   # (or RIG_STARTED unset) every recorded part
# A pid is only signalled while it is still the process that was recorded (same start time).
RIG_DISPLAY="${RIG_DISPLAY:-:97}"
RIG_DIR="${RIG_DIR:-${TMPDIR:-/tmp}/vdbnb-rig${RIG_DISPLAY#:}}"
[ -d "$RIG_DIR" ] || exit 0
parts="${RIG_STARTED-all}"
[ "$parts" = all ] && parts="keepalive-system_out keepalive-mic_feed pulse openbox xorg"
# keepalives before the sound server, the window manager before X
order="keepalive-system_out keepalive-mic_feed pulse openbox xorg"
starttime() { awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }
for part in $order; do
  case " $parts " in *" $part "*) ;; *) continue;; esac
  f="$RIG_DIR/$part.pid"
  [ -f "$f" ] || continue
  read -r pid st <"$f"
  if [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do [ "$(starttime "$pid")" = "$st" ] || break; sleep 0.1; done
    [ "$(starttime "$pid")" = "$st" ] && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
# the folder rig-up made (logs, sockets, configs) goes once no part of the rig is left running
if [ -f "$RIG_DIR/.made-by-rig-up" ] && ! ls "$RIG_DIR"/*.pid >/dev/null 2>&1; then
  rm -rf "$RIG_DIR"
fi
echo "[rig] down: ${parts:-nothing (this shell did not start the rig)}" >&2
