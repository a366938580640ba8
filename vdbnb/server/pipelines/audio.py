"""Speech-to-text on audio RTStreams: VAD-cut utterances, interim and final transcripts, accurate pass."""
from __future__ import annotations

import logging

from ...events import TRANSCRIPT, Event
from ...media.fragments import Fragment
from ..store import now
from .base import Worker

log = logging.getLogger("vdbnb.server.pipelines.audio")


class AudioWorker(Worker):
    name = "transcript"

    def __init__(self, pipes):
        super().__init__(pipes)
        self.state: dict[str, dict] = {}
        self.model = self.ctx.settings.stt_model
        self.accurate = self.ctx.settings.accurate_pass

    def streams(self) -> list[dict]:
        return self.ctx.store.all(
            "SELECT * FROM rtstreams WHERE channel_id IN ('mic','system_audio') AND (transcript_status='running' OR id IN "
            "(SELECT rtstream_id FROM scene_indexes WHERE extraction_type='transcript' AND status!='stopped'))")

    def _st(self, rts: dict) -> dict:
        st = self.state.get(rts["id"])
        if st is None:
            from ...ai.stt import StreamingTranscriber
            stt = StreamingTranscriber(model=self.model)
            self.stats["engine"] = stt.engine
            from ...media.decode import AudioStreamDecoder
            st = self.state[rts["id"]] = {"stt": stt, "flushed": False, "accurate_done": False,
                                          "decoder": AudioStreamDecoder()}
        return st

    def process(self, rts: dict, frag: Fragment) -> None:
        st = self._st(rts)
        st["flushed"] = False
        pcm, t0 = st["decoder"].decode(frag)
        self._handle(rts, st["stt"].feed(pcm, t0))

    def idle(self, rts: dict) -> None:
        st = self.state.get(rts["id"])
        if st is None or st["flushed"] or not self.session_done(rts):
            return
        if self.p.cursor(rts["id"], self.name) < rts["last_seq"]:
            return
        st["flushed"] = True
        self._handle(rts, st["stt"].flush())
        self.p.indexer.flush_stream(rts)
        if self.accurate and not st["accurate_done"] and rts["transcript_status"] == "running":
            st["accurate_done"] = True
            try:
                self.accurate_pass(rts)
            except Exception:
                log.exception("accurate pass failed for %s; the live transcript stays", rts["id"])

    def _handle(self, rts: dict, utts) -> None:
        live = rts["transcript_status"] == "running"
        for u in utts:
            text = (u.text or "").strip()
            if not text:
                continue
            ev = Event(channel=TRANSCRIPT, session_id=rts["session_id"], collection_id=rts["collection_id"],
                       rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=rts["channel_id"],
                       text=text, is_final=bool(u.is_final), start=u.start, end=u.end, engine=u.engine,
                       captured_at=u.end, processed_at=now())
            if live:
                self.p.emit(ev, target_ws=rts["transcript_ws"])
                self.stats["last_event_at"] = ev.emitted_at
            if u.is_final:
                self.p.indexer.on_final_transcript(rts, ev)

    def accurate_pass(self, rts: dict) -> None:
        """After the session stopped: re-transcribe with the accurate model; replace the live finals."""
        from ...ai.accurate import accurate_pass
        from ...media.decode import decode_audio
        paths = self.ctx.ingest.fragment_paths(rts["id"])
        if not paths:
            return
        pcm, t0 = decode_audio(paths)
        utts = accurate_pass(pcm, t0)
        old = self.ctx.store.all("SELECT id FROM events WHERE rtstream_id=? AND channel=? AND is_final=1",
                                 (rts["id"], TRANSCRIPT))
        old_ids = [r["id"] for r in old]
        with self.ctx.store.transaction():
            self.ctx.store.db.execute(
                "UPDATE events SET is_final=0, data=json_set(COALESCE(data,'{}'), '$.superseded_by', "
                "'accurate_pass') WHERE rtstream_id=? AND channel=? AND is_final=1", (rts["id"], TRANSCRIPT))
        self.p.indexer.forget(old_ids)
        for u in utts:
            if not u.text.strip():
                continue
            ev = Event(channel=TRANSCRIPT, session_id=rts["session_id"], collection_id=rts["collection_id"],
                       rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=rts["channel_id"],
                       text=u.text.strip(), is_final=True, start=u.start, end=u.end, engine=u.engine,
                       captured_at=u.end, processed_at=now(),
                       data={"accurate_pass": True, "replaces": len(old_ids)})
            self.p.emit(ev, target_ws=rts["transcript_ws"])
