"""Shared helpers of the tests (tests/) and the benchmarks (bench/): real servers, real media, real speech, a
real browser on a real JupyterLab, what a server stored, waiting with deadlines.

Not part of the ``vdbnb`` package (not in the wheel), like ``rig/`` beside it; both import it as ``testkit``.

    server.py    ServerProc / Server: `vdbnb serve` in its own process on a free port; free_port
    backend.py   Backend: the embedded store (SQLite + files) or PostgreSQL + S3 on engines.py's engines
    engines.py   PostgreSQL (+ pgvector) and SeaweedFS S3 on loopback ports, started from pip packages
    media.py     fragments from the recorder's own encoders (audio, video, screen), text images, long sessions
    speech.py    espeak-ng speech (wav / 16 kHz PCM), WER with Whisper's English normaliser
    webhooks.py  WebhookReceiver: a real HTTP server on 127.0.0.1 recording every POST
    events.py    WsRecorder: every message of a server's collection event websocket
    llm.py       RecordingLLM: an OpenAI-compatible endpoint (the one fake: a remote model) recording requests
    leaks.py     secrets made per run (keys, passwords, spoken passphrases) and where they might leak
    stored.py    backend calls with the API key, fragments on disk and in SQLite, strict decoding
    procs.py     RSS / CPU / descendants / liveness from /proc; the processes carrying a marker variable
    simrec.py    a simulated recorder over the real ingest websocket (load and soak)
    lab.py       JupyterLab 4 / Notebook 7 + Debian's Chromium through Playwright
    tls.py       share_tls_context(): httpx.get & co. share one TLS context instead of one per call
    wait.py      wait_for(cond, timeout, what) / wait_until(pred, timeout)
"""
from testkit.wait import wait_for, wait_for_value, wait_until

__all__ = ["wait_for", "wait_for_value", "wait_until"]
