"""The CapturePanel's way out to the browser: a daemon thread that sends audio levels, thumbnails (binary
buffers of custom messages), results and staleness warnings at throttled rates, so nothing blocks the kernel.
A mixin of :class:`~vdbnb.widgets.panel.CapturePanel`."""
from __future__ import annotations

import time

from vdbnb import events as E


def _is_video(ch: dict) -> bool:
    return ch.get("type") == "video" or E.category_of(ch["channel_id"], ch.get("type")) == E.SCREEN


class PanelPump:
    def _pump_loop(self) -> None:
        tick = min(self.level_interval, self.thumb_interval) / 3
        next_events = next_stale = next_levels = 0.0
        while not self._closed.wait(tick):
            try:
                now = time.monotonic()
                if now >= next_levels:
                    next_levels = now + self.level_interval * 0.95
                    self._send_levels()
                self._send_thumbs(now)
                if now >= next_events:
                    next_events = now + 0.2
                    self._flush_events()
                if now >= next_stale:
                    next_stale = now + 0.5
                    self._check_stale(now)
            except Exception:  # noqa: BLE001 - never let the pump die on one bad frame
                time.sleep(0.1)

    def _send_levels(self) -> None:
        """One message per tick with every level sample since the last one.

        ``levels`` has the newest value per channel; ``samples`` all of them (``[ts, rms, peak]``), so the front
        end can replay a burst at its own pace when the audio path delivers blocks in clumps (busy CPU).
        """
        with self._lock:
            fresh = {c: q for c, q in self._levels.items() if q}
            self._levels = {c: [] for c in self._levels}
        if fresh:
            self.send({"type": "levels",
                       "levels": {c: {"ts": q[-1][0], "rms": q[-1][1], "peak": max(x[2] for x in q)}
                                  for c, q in fresh.items()},
                       "samples": {c: [list(x) for x in q] for c, q in fresh.items()}})
            self.stats["level_msgs"] += 1
            self.stats["level_samples"] += sum(len(q) for q in fresh.values())

    def _send_thumbs(self, now: float) -> None:
        todo = []
        with self._lock:
            for cid, (meta, jpeg, seq) in self._thumbs.items():
                sent_seq, sent_at = self._thumb_sent.get(cid, (0, -1e9))
                if seq == sent_seq:
                    continue
                if now - sent_at < self.thumb_interval * 0.95:
                    continue
                self.stats["dropped_thumbs"] += max(0, seq - sent_seq - 1)
                self._thumb_sent[cid] = (seq, now)
                todo.append((meta, jpeg))
        for meta, jpeg in todo:
            self.send({"type": "thumb", **meta}, buffers=[jpeg])
            self.stats["thumb_msgs"] += 1
            self.stats["thumb_bytes"] += len(jpeg)

    def _flush_events(self) -> None:
        with self._lock:
            if not self._events_dirty:
                return
            self._events_dirty = False
            lines = list(self._finals)[-self.transcript_lines:] + list(self._interims.values())
            lines = lines[-self.transcript_lines:]
            counts = dict(self._counts)
            alerts = list(self._alerts)[-5:]
            cells = list(self._cells)
        with self.hold_sync():
            self.transcript = lines
            self.counts = counts
            self.alerts = alerts
            self.cells = cells

    def _check_stale(self, now: float) -> None:
        items = []
        watching = self.state in ("previewing", "recording", "paused")
        if watching and now - self._watch_since > self.stale_after:
            active = set(self.selected) if self.state != "previewing" else {c["channel_id"] for c in self.channels}
            active -= set(self.paused)
            active -= {c["channel_id"] for c in self.channels if c.get("type") == E.KERNEL}  # no previews
            if not getattr(self, "_previewing", True):   # thumbnails come only with a preview (recorder/screen.py)
                active -= {c["channel_id"] for c in self.channels if _is_video(c)}
            kinds = {c["channel_id"]: _is_video(c) for c in self.channels}
            with self._lock:
                seen = dict(self._last_seen)
            for cid in sorted(active):
                last = seen.get(cid, self._watch_since)
                silent = now - last
                if silent > self.stale_after:
                    what = "thumbnails" if kinds.get(cid) else "audio levels"
                    items.append({"what": "recorder", "channel_id": cid, "silent_s": round(silent, 1),
                                  "message": f"no {what} from {cid} for {silent:.1f} s — the recorder may have "
                                             "stalled or lost the device. What to do: check panel.errors; "
                                             "stop and start again, or re-run CapturePanel()."})
        if self.state == "recording" and (self._event_source is not None):
            with self._lock:
                speech, last_tr = self._last_speech, self._last_transcript
            if speech is not None and speech > last_tr and now - speech > self.transcript_stale_after:
                silent = now - last_tr
                items.append({"what": "transcript", "channel_id": "", "silent_s": round(silent, 1),
                              "message": f"speech on the mic but no transcript for {silent:.0f} s — the "
                                         "transcription pipeline is behind or not started. What to do: check "
                                         "`%vdbnb status`; call rtstream.start_transcript() if it is off."})
        with self._lock:
            for what, (msg, at) in list(self._pipeline_notes.items()):
                if now - at > 30:
                    del self._pipeline_notes[what]
                else:
                    items.append({"what": "pipeline", "channel_id": "", "silent_s": 0, "message": msg})
        if items != list(self.stale):
            if [(i["what"], i["channel_id"]) for i in items] != [(i["what"], i["channel_id"]) for i in self.stale] \
                    or now - getattr(self, "_stale_sent", 0) > 1.0:
                self._stale_sent = now
                self.stale = items
