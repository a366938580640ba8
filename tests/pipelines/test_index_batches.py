"""A prompt-driven audio index's batch of final transcripts lives in the store, not in a worker's memory: a
worker that takes the stream over goes on with the batch the previous one was filling (a final it hears again
is not added twice), and a flush removes what it summarised and keeps what came after."""
from __future__ import annotations

import json
import time

from vdbnb.config import Settings
from vdbnb.events import AUDIO_INDEX, TRANSCRIPT, Event
from vdbnb.server.context import Context
from vdbnb.server.pipelines import Pipelines

SAYS = ["the invoice for march is still unpaid", "send the design review notes to the team",
        "we move the launch to the second week of june", "ask legal about the new contract terms",
        "book the room for the quarterly planning"]


def test_an_audio_index_batch_is_taken_over_by_the_next_worker(tmp_path):
    ctx = Context(Settings.from_env(data_dir=tmp_path))
    try:
        sid = ctx.sessions.create("default", "batches")["session_id"]
        ctx.sessions.start(sid, "default", [{"channel_id": "mic:default", "type": "audio", "name": "m", "store": True}])
        rts = ctx.store.one("SELECT * FROM rtstreams WHERE session_id=?", (sid,))
        ctx.store.insert("scene_indexes", {"id": "idx-notes", "rtstream_id": rts["id"],
                                           "collection_id": rts["collection_id"], "extraction_type": "transcript",
                                           "extraction_config": json.dumps({"segmenter": "word",
                                                                            "segmentation_value": 1000}),
                                           "prompt": "List the action items", "name": "notes", "status": "active",
                                           "created_at": time.time()})
        t0 = time.time() - 60
        finals = [Event(channel=TRANSCRIPT, session_id=sid, collection_id=rts["collection_id"], rtstream_id=rts["id"],
                        channel_id=rts["channel_id"], text=text, is_final=True, start=t0 + 5 * i, end=t0 + 5 * i + 3)
                  for i, text in enumerate(SAYS)]

        first = Pipelines(ctx)  # a worker hears two finals, then dies before its batch is full
        for ev in finals[:2]:
            first.indexer.on_final_transcript(rts, ev)
        nxt = Pipelines(ctx)    # the worker taking over re-hears the second final, then the third
        for ev in finals[1:3]:
            nxt.indexer.on_final_transcript(rts, ev)
        stored = json.loads(ctx.store.one("SELECT texts FROM index_batches WHERE index_id='idx-notes'")["texts"])
        assert [it["text"] for it in stored] == SAYS[:3]

        nxt.indexer.flush_stream(rts)
        evs = ctx.store.all("SELECT * FROM events WHERE channel=?", (AUDIO_INDEX,))
        assert len(evs) == 1 and evs[0]["text"], evs
        assert json.loads(evs[0]["data"])["source_text"] == " ".join(SAYS[:3])
        assert evs[0]["start"] == finals[0].start and evs[0]["end"] == finals[2].end
        assert ctx.store.one("SELECT 1 AS x FROM index_batches WHERE index_id='idx-notes'") is None

        # a flush removes what it read; a final added meanwhile stays for the next summary
        nxt.indexer.on_final_transcript(rts, finals[3])
        read = nxt.indexer._batch("idx-notes")
        nxt.indexer.on_final_transcript(rts, finals[4])
        nxt.indexer._drop_batch("idx-notes", read)
        assert [it["text"] for it in nxt.indexer._batch("idx-notes")["items"]] == SAYS[4:]
    finally:
        ctx.store.close()
