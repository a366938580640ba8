"""Search documents from results, and prompt-driven audio indexes (batches of final transcripts → LLM)."""
from __future__ import annotations

import logging
import re
import threading

from ...events import AUDIO_INDEX, CELL, KERNEL, TRANSCRIPT, VISUAL_INDEX, Event, event_id
from ..store import _enc, dec, now

log = logging.getLogger("vdbnb.server.pipelines.indexer")
SEARCHABLE = {TRANSCRIPT: "transcript", AUDIO_INDEX: "audio_index", VISUAL_INDEX: "visual_index", KERNEL: CELL}


def llm_engine():
    from ...ai.llm import get_llm
    return get_llm()


def llm_sees_images(llm) -> bool:
    """Whether screen frames go to the model with the text: an OpenAI-compatible endpoint (a VLM may read
    them), unless VDBNB_LLM_IMAGES=0. Frames always leave with the secrets' lines blacked out."""
    from ...ai import settings
    return engine_name(llm).startswith("openai-compatible") and settings().llm_images


def engine_name(llm) -> str:
    return getattr(llm, "name", None) or getattr(llm, "engine", None) or type(llm).__name__


class Indexer:
    def __init__(self, pipes):
        self.p = pipes
        self.ctx = pipes.ctx
        self._lock = threading.Lock()
        self._embeddings_missing: list[str] | None = None

    # ---- search documents
    def on_event(self, ev: Event) -> None:
        kind = SEARCHABLE.get(ev.channel)
        text = ev.text
        if kind == CELL:
            from ..kernel import search_text
            text = search_text(ev)   # error, source, outputs; nothing for a private cell
        if not kind or not (text or "").strip() or ev.start is None:
            return
        if ev.channel == TRANSCRIPT and not ev.is_final:
            return
        if not self._can_embed():
            return
        from ..search import Doc
        meta = {"engine": ev.engine, **({"index_name": ev.data.get("index_name")} if ev.data.get("index_name") else {})}
        if kind == CELL:
            meta.update({k: ev.data.get(k) for k in ("execution_count", "status", "error", "notebook_path")})
        docs = [Doc(doc_id=ev.id, collection_id=ev.collection_id, session_id=ev.session_id,
                    rtstream_id=ev.rtstream_id, rtstream_name=ev.rtstream_name, channel_id=ev.channel_id, kind=kind,
                    index_id=ev.index_id, start=ev.start, end=ev.end or ev.start, text=text, metadata=meta)]
        ocr = (ev.data or {}).get("ocr_text")
        if ocr and ocr.strip() and ocr.strip() != ev.text.strip():
            docs.append(Doc(doc_id=ev.id + ":ocr", collection_id=ev.collection_id, session_id=ev.session_id,
                            rtstream_id=ev.rtstream_id, rtstream_name=ev.rtstream_name, channel_id=ev.channel_id,
                            kind="ocr", index_id=ev.index_id, start=ev.start, end=ev.end or ev.start, text=ocr,
                            metadata={"window_title": ev.data.get("window_title")}))
        self.ctx.search_index().add(docs)

    def _can_embed(self) -> bool:
        """Search documents need the embeddings engine; without it results are kept but not searchable (the
        search route answers 400 naming what to install), said once in the log."""
        if self._embeddings_missing is None:
            from ...ai.engines import BY_KEY, missing_modules
            self._embeddings_missing = missing_modules(BY_KEY["embeddings"])
            if self._embeddings_missing:
                log.warning("search documents are not indexed: the embeddings engine is not installed (missing %s; "
                            "pip install 'vdbnb[ai]')", ", ".join(self._embeddings_missing))
        return not self._embeddings_missing

    def forget(self, event_ids: list[str]) -> None:
        if event_ids:
            self.ctx.search_index().delete(event_ids)

    # ---- audio indexes
    def on_final_transcript(self, rts: dict, ev: Event) -> None:
        idxs = self.ctx.store.all("SELECT * FROM scene_indexes WHERE rtstream_id=? AND extraction_type='transcript' "
                                  "AND status!='stopped'", (rts["id"],))
        for idx in idxs:
            self.add_to_index(idx, ev, rts)

    def _batch(self, index_id: str) -> dict:
        """The final transcripts an audio index is collecting, as stored (``index_batches``): a worker that
        takes the stream over goes on with the batch the previous one was filling."""
        r = self.ctx.store.one("SELECT texts FROM index_batches WHERE index_id=?", (index_id,))
        items = dec(r["texts"], []) if r else []
        return {"items": items, "texts": [it["text"] for it in items],
                "start": items[0]["start"] if items else None, "end": items[-1]["end"] if items else None}

    def add_to_index(self, idx: dict, ev: Event, rts: dict) -> None:
        with self._lock:
            b = self._batch(idx["id"])
            if any(abs(it["start"] - ev.start) < 0.05 for it in b["items"]):
                return  # heard again by a worker that took the stream over: it is in the batch already
            item = {"text": ev.text, "start": ev.start, "end": ev.end}
            b["items"].append(item)
            b["texts"].append(ev.text)
            b["start"] = b["items"][0]["start"]
            b["end"] = ev.end
            self.ctx.store.upsert("index_batches", {"index_id": idx["id"], "rtstream_id": rts["id"],
                                                    "texts": b["items"], "start": b["start"], "end": b["end"],
                                                    "updated_at": now()}, key=("index_id",))
            full = self._full(idx, b)
        if full:
            self.flush_index(idx, rts)

    @staticmethod
    def _full(idx: dict, b: dict) -> bool:
        cfg = dec(idx["extraction_config"], {}) or {}
        seg = cfg.get("segmenter", "word")
        try:
            val = float(cfg.get("segmentation_value", 10))
        except (TypeError, ValueError):
            val = 10.0
        text = " ".join(b["texts"])
        if seg == "time":
            return (b["end"] - b["start"]) >= val
        if seg == "sentence":
            return max(len(re.findall(r"[.!?](\s|$)", text)), len(b["texts"])) >= val
        return len(text.split()) >= val

    def flush_stream(self, rts: dict) -> None:
        for idx in self.ctx.store.all("SELECT * FROM scene_indexes WHERE rtstream_id=? AND "
                                      "extraction_type='transcript'", (rts["id"],)):
            self.flush_index(idx, rts)

    def flush_index(self, idx: dict, rts: dict) -> None:
        """Summarise the batch into one ``audio_index`` event (its id from the index and the batch's start: a
        flush repeated after a takeover stores it once), then empty the batch."""
        with self._lock:
            b = self._batch(idx["id"])
        if not b["texts"]:
            return
        llm = llm_engine()
        res = llm.complete(idx["prompt"] or "Summarise what was said", b["texts"])
        text = (getattr(res, "text", None) or str(res)).strip()
        if not text:
            self._drop_batch(idx["id"], b)
            return
        ev = Event(channel=AUDIO_INDEX, session_id=rts["session_id"], collection_id=rts["collection_id"],
                   rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=rts["channel_id"],
                   index_id=idx["id"], text=text, start=b["start"], end=b["end"],
                   engine=getattr(res, "engine", None) or engine_name(llm), captured_at=b["end"], processed_at=now(),
                   id=event_id(idx["id"], AUDIO_INDEX, round(b["start"], 1)),
                   data={"prompt": idx["prompt"], "index_name": idx["name"], "source_text": " ".join(b["texts"])})
        self.p.emit(ev, target_ws=idx["ws_connection_id"])
        self._drop_batch(idx["id"], b)

    def _drop_batch(self, index_id: str, b: dict) -> None:
        """Remove the summarised items from the stored batch; finals added since it was read stay."""
        last = b["items"][-1]["start"]
        with self._lock:
            rest = [it for it in self._batch(index_id)["items"] if it["start"] > last + 0.05]
            if not rest:
                self.ctx.store.execute("DELETE FROM index_batches WHERE index_id=?", (index_id,))
                return
            self.ctx.store.execute('UPDATE index_batches SET texts=?, start=?, "end"=?, updated_at=? WHERE index_id=?',
                                   (_enc(rest), rest[0]["start"], rest[-1]["end"], now(), index_id))
