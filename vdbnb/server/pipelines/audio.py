"""Speech-to-text on audio RTStreams: VAD-cut utterances, interim and final transcripts, accurate pass."""
from __future__ import annotations

import logging

from ...events import TRANSCRIPT, Event, event_id
from ...media.fragments import Fragment
from ...redaction import SPOKEN_SECRETS, SpokenSecrets
from ..store import dec, now
from .base import Worker

log = logging.getLogger("vdbnb.server.pipelines.audio")


class AudioWorker(Worker):
    name = "transcript"

    def __init__(self, pipes):
        super().__init__(pipes)
        self.state: dict[str, dict] = {}
        self.model = self.ctx.settings.stt_model
        self.final_model = self.ctx.settings.stt_final_model
        self.accurate = self.ctx.settings.accurate_pass

    def streams(self) -> list[dict]:
        return self.ctx.store.all(
            "SELECT * FROM rtstreams WHERE channel_id IN ('mic','system_audio') AND (transcript_status='running' OR id IN "
            "(SELECT rtstream_id FROM scene_indexes WHERE extraction_type='transcript' AND status!='stopped'))")

    def _st(self, rts: dict) -> dict:
        st = self.state.get(rts["id"])
        if st is None:
            from ...ai.stt import StreamingTranscriber
            stt = StreamingTranscriber(model=self.model, final_model=self.final_model)
            self.stats["engine"] = stt.engine
            from ...media.decode import AudioStreamDecoder
            st = self.state[rts["id"]] = {"stt": stt, "flushed": False, "accurate_done": False,
                                          "decoder": AudioStreamDecoder(), "spoken": SpokenSecrets(self.p.redactor)}
        return st

    def process(self, rts: dict, frag: Fragment) -> None:
        fresh = rts["id"] not in self.state
        st = self._st(rts)
        if fresh and frag.seq > 0:
            self._prime(rts, st, frag.seq - 1)
        # media after a pass over a stopped session: it was stopped by the server (a recorder silent for the
        # grace period, since resumed) or a spool drained late: the accurate pass runs again at the next stop
        st["flushed"] = st["accurate_done"] = False
        pcm, t0 = st["decoder"].decode(frag)
        self._handle(rts, st["stt"].feed(pcm, t0))

    def _prime(self, rts: dict, st: dict, seq: int) -> None:
        """A stream taken up after its cursor (a restart, or a takeover from a dead worker): the fragment before
        is decoded and heard first, its results dropped (they were stored by whoever moved the cursor past it),
        so that the decoder and the voice-activity state match what the previous worker had: the utterances
        that follow get the same times, hence the same event ids."""
        try:
            prev = self.ctx.ingest.load_range(rts["id"], seq, seq)
            if prev:
                pcm, t0 = st["decoder"].decode(prev[0])
                for u in st["stt"].feed(pcm, t0):
                    # a final ending in a cue ("... my password is") makes the next utterance the secret
                    if u.is_final and (u.text or "").strip():
                        st["spoken"].redact(u.text.strip(), u.start, u.end, True)
        except Exception:
            log.exception("priming %s on seq %s failed; going on without", rts["id"], seq)

    def commit_point(self, rts: dict, seq: int) -> int | None:
        # the cursor moves only between utterances: a worker that takes the stream over resumes where no
        # utterance was open, re-hears the same audio and emits its finals under the same ids
        st = self.state.get(rts["id"])
        return None if st is not None and st["stt"].in_utterance else seq

    def forget(self, rtstream_id: str) -> None:
        super().forget(rtstream_id)
        self.state.pop(rtstream_id, None)

    def idle(self, rts: dict) -> None:
        st = self.state.get(rts["id"])
        if not self.session_done(rts) or self.position(rts) < rts["last_seq"]:
            return
        if st is not None and not st["flushed"]:
            st["flushed"] = True
            self._handle(rts, st["stt"].flush())
            self.p.indexer.flush_stream(rts)
            if not self.p.leases.advance(rts["id"], self.name, rts["last_seq"]):
                self.forget(rts["id"])
                return
        accurate = f"{self.name}:accurate"
        if self.accurate and rts["transcript_status"] == "running" and \
                self.p.cursor(rts["id"], accurate) < rts["last_seq"] and self.p.leases.holds(rts["id"], self.name):
            try:
                self.accurate_pass(rts)
            except Exception:
                log.exception("accurate pass failed for %s; the live transcript stays", rts["id"])
            # done (or given up) for the media stored so far: persisted, so another worker does not redo it
            self.p.leases.advance(rts["id"], self.name, rts["last_seq"], cursor=accurate)

    def _redact(self, rts: dict, st: dict, ev: Event) -> list:
        """The redaction step, first: a spoken secret is masked (and alerted, once per utterance and kind)
        before the text goes anywhere, with what the stream's previous finals said (SpokenSecrets: a cue ending
        one final makes the next the secret; a short final right after a spoken secret is more of it)."""
        red = st["spoken"].redact(ev.text, ev.start, ev.end, bool(ev.is_final))
        ev.text = red.text
        if red.findings:
            ev.data["redacted"] = sorted({f.label for f in red.findings if f.redacted})
        said = st.setdefault("alerted", {}).setdefault(round(ev.start or 0, 1), set())
        new = [f for f in red.findings if f.label not in said]
        said.update(f.label for f in new)
        if new:
            self.p.alerts.secrets(ev, new, rts["transcript_ws"])
        if ev.is_final:
            st["alerted"].pop(round(ev.start or 0, 1), None)
        return red.findings

    def _handle(self, rts: dict, utts) -> None:
        live = rts["transcript_status"] == "running"
        st = self.state[rts["id"]]
        for u in utts:
            text = (u.text or "").strip()
            if not text:
                continue
            ev = Event(channel=TRANSCRIPT, session_id=rts["session_id"], collection_id=rts["collection_id"],
                       rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=rts["channel_id"],
                       text=text, is_final=bool(u.is_final), start=u.start, end=u.end, engine=u.engine,
                       captured_at=u.end, processed_at=now(),
                       # ids from media times alone: a worker that re-hears the utterance (a takeover) emits its
                       # interims and final under the same ids, whatever text its pass produced
                       id=event_id(rts["id"], TRANSCRIPT, "final", round(u.start, 1)) if u.is_final else
                       event_id(rts["id"], TRANSCRIPT, "interim", round(u.start, 1), round(u.end, 1)))
            findings = self._redact(rts, st, ev)
            if live:
                self.p.emit(ev, target_ws=rts["transcript_ws"], findings=findings)
                self.stats["last_event_at"] = ev.emitted_at
            if u.is_final:
                self.p.indexer.on_final_transcript(rts, ev)

    def _live_finals(self, rts: dict) -> list[dict]:
        """The stream's final transcripts that are not results of an accurate pass."""
        return [r for r in self.ctx.store.all("SELECT id, data FROM events WHERE rtstream_id=? AND channel=? AND "
                                              "is_final=1", (rts["id"], TRANSCRIPT))
                if not (dec(r["data"], {}) or {}).get("accurate_pass")]

    def accurate_pass(self, rts: dict) -> None:
        """After the session stopped: re-transcribe with the accurate model; replace the live finals.
        Results are stored first (deterministic ids), then the live finals they replace are superseded: a
        pass cut short by a dead worker is redone by the next one, and nothing is stored twice."""
        from ...ai.accurate import accurate_pass
        from ...media.decode import decode_audio
        old = self._live_finals(rts)
        if not old:
            return  # nothing live to replace (done before, or nothing was said)
        sources = self.ctx.ingest.fragment_sources(rts["id"])
        if not sources:
            return
        pcm, t0 = decode_audio(sources)
        utts = accurate_pass(pcm, t0)
        old_ids = [r["id"] for r in old]
        spoken = SpokenSecrets(self.p.redactor)
        for u in utts:
            if not u.text.strip():
                continue
            ev = Event(channel=TRANSCRIPT, session_id=rts["session_id"], collection_id=rts["collection_id"],
                       rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=rts["channel_id"],
                       text=u.text.strip(), is_final=True, start=u.start, end=u.end, engine=u.engine,
                       captured_at=u.end, processed_at=now(),
                       data={"accurate_pass": True, "replaces": len(old_ids)},
                       id=event_id(rts["id"], TRANSCRIPT, "accurate", round(u.start, 1)))
            red = spoken.redact(ev.text, ev.start, ev.end, True)
            if not any(f.label in SPOKEN_SECRETS for f in red.findings):
                # the live pass heard a spoken secret in this time but this decode did not hear its cue ("My API
                # key does …"): the utterance is masked whole (fail closed)
                heard = next((lab for lab in SPOKEN_SECRETS if self._alerted(rts, lab, ev.start, ev.end)), None)
                if heard:
                    red = self.p.redactor.text(ev.text, "text", spoken=True, after_cue=heard)
            ev.text = red.text
            if red.findings:
                ev.data["redacted"] = sorted({f.label for f in red.findings if f.redacted})
                # the live pass alerted the moment it heard them; alert only what it missed
                new = [f for f in red.findings if not self._alerted(rts, f.label, ev.start, ev.end)]
                if new:
                    self.p.alerts.secrets(ev, new, rts["transcript_ws"])
            self.p.emit(ev, target_ws=rts["transcript_ws"], findings=red.findings)
        store = self.ctx.store
        with store.transaction():
            for r in old:
                store.update("events", "id", r["id"], is_final=0,
                             data={**(dec(r["data"], {}) or {}), "superseded_by": "accurate_pass"})
        self.p.indexer.forget(old_ids)

    def _alerted(self, rts: dict, label: str, start: float, end: float) -> bool:
        return self.ctx.store.one(
            "SELECT 1 FROM events WHERE rtstream_id=? AND channel='alert' AND label=? AND start<=? AND \"end\">=?",
            (rts["id"], label, end + 1.0, start - 1.0)) is not None
