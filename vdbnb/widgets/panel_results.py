"""What a CapturePanel shows of the server's events: transcript lines (interim, then final), counts, alerts,
the kernel channel's cells, pipeline notes and the session's lifecycle. A mixin of
:class:`~vdbnb.widgets.panel.CapturePanel` (it reads and writes the panel's state under its lock); the pump
(:mod:`.panel_pump`) sends what changed to the browser."""
from __future__ import annotations

import time

from vdbnb import events as E
from vdbnb.widgets.sources import EventSource


class PanelResults:
    def _subscribe_events(self, src: EventSource) -> None:
        self._unsubs.append(src.subscribe(self._on_event))

    def _on_event(self, ev: E.Event) -> None:
        sid = self.session_id
        if ev.session_id and not sid:
            if self.state == "starting":  # maybe ours: the session id is known once source.start returns
                with self._lock:
                    self._pending.append(ev)
            return
        if sid and ev.session_id and ev.session_id != sid:
            return
        if not ev.channel_id and ev.rtstream_name:  # websocket messages carry the stream name, not its category
            ev.channel_id = E.category_of(ev.rtstream_name.split(" ")[0])
        self._live.append(ev)
        with self._lock:
            self._counts["events"] += 1
            if ev.channel == E.TRANSCRIPT:
                self._counts["transcript"] += 1 if ev.is_final else 0
                self._last_transcript = time.monotonic()
                key = ev.rtstream_id or ev.channel_id or "?"
                line = {"id": ev.id, "text": (ev.text or "").strip(), "is_final": bool(ev.is_final),
                        "channel_id": ev.channel_id or "", "t": self._t(ev.start)}
                if ev.is_final:
                    self._interims.pop(key, None)
                    self._finals.append(line)
                else:
                    self._interims[key] = line
            elif ev.channel in (E.AUDIO_INDEX, E.VISUAL_INDEX, E.SCENE_INDEX):
                self._counts["index"] += 1
            elif ev.channel == E.KERNEL:
                self._counts["cells"] += 1
                d = ev.data or {}
                first = next((ln for ln in (ev.text or "").splitlines() if ln.strip()), "")
                self._cells.append({"n": d.get("execution_count"), "t": self._t(ev.start),
                                    "status": "private" if d.get("private") else d.get("status") or "",
                                    "ename": d.get("ename") or "", "line": first[:120]})
            elif ev.channel == E.ALERT:
                self._counts["alerts"] += 1
                self._alerts.append({"label": ev.label or "alert", "text": ev.text or "", "t": self._t(ev.start)})
            elif ev.channel == E.PIPELINE:
                what = ev.label or ev.engine or "pipeline"
                status = (ev.data or {}).get("status") or ev.event or ""
                if "error" in str(status) or "fail" in str(status):
                    self._error("PIPELINE", f"{what}: {ev.text or status}",
                                hint="the server's pipeline reported an error; see the server log "
                                     "(`%vdbnb status`); results may be missing until it recovers.")
                elif status in ("ok", "recovered", "caught_up"):
                    self._pipeline_notes.pop(what, None)
                else:
                    self._pipeline_notes[what] = (f"{what} pipeline: {ev.text or status}", time.monotonic())
            elif ev.channel == E.CAPTURE_SESSION:
                self._on_session_event(ev)
            self._events_dirty = True

    def _on_session_event(self, ev: E.Event) -> None:
        name = (ev.event or "").split(".")[-1]
        detail = (ev.data or {}).get("data") or {}
        if name in ("stopping", "stopped") and str(detail.get("reason") or "").startswith("recorder_lost"):
            # the server gave up on a silent recorder; it resumes the session when the recorder is back (a
            # browser recorder keeps recording meanwhile): not a stop the user asked for
            self.status = "the recorder's link is down; the session resumes when it is back"
            return
        if name == "active" and self.state == "starting":
            self.state = "recording"
        elif name == "stopping":
            self.state = "stopping"
        elif name in ("stopped", "exported"):
            self.state = "stopped"
        elif name == "failed":
            self.state = "failed"
            err = ((ev.data or {}).get("data") or {}).get("error") or "capture session failed"
            self._error("SESSION_FAILED", str(err), hint="check `%vdbnb status` and the recorder log, then "
                                                          "start a new session.")
        if name:
            self.status = f"session {name}"

    def _t(self, start: float | None) -> float | None:
        s0 = self._live.session_start
        return None if start is None or s0 is None else round(start - s0, 2)

