"""Media: fragments and the audio/video inside them. One module per job, each used by one runtime:

- :mod:`.fragments` — the fragment framing (the wire contract: the recorder packs, the server unpacks).
- :mod:`.formats` — codec facts read from bytes: Opus rate and TOC durations, H.264 Annex-B NAL units.
- recorder: :mod:`.encode` (H.264 and Opus encoders), :mod:`.fragmenter` (packets -> numbered fragments).
- server: :mod:`.check` (ingest validation), :mod:`.decode` (fragments -> PCM / frames, for the pipelines),
  :mod:`.mux` (fragments -> MP4, for exports).

Nothing is re-exported here, so that importing one job does not load the others (``check`` needs no PyAV).
"""
