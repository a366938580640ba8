"""What the panel tells the user to do about an error, by error code (the recorder protocol's codes, the browser
recorder's and the panel's own)."""
from __future__ import annotations

HINTS = {
    "PERMISSION_DENIED": "grant screen/microphone access to the recorder, then press Start again.",
    "NO_DISPLAY": "no X display: run inside a desktop session or set DISPLAY (tests: source rig/rig-up.sh).",
    "AUDIO_DEVICE": "no audio input: check `pactl list short sources` (PulseAudio/PipeWire) and the mic cable.",
    "CHANNEL_LOST": "the device went away (unplugged or display sleep); pick channels again and restart.",
    "UPLOAD_FAILED": "the server did not accept media; check `%vdbnb status`; the recorder keeps a buffer and "
                     "resends after reconnect.",
    "NOT_RECORDING": "press Start first (or call panel.start()).",
    "NO_CHANNELS": "tick at least one channel in the panel, or pass channels=[...] to panel.start().",
    "PREVIEW_ONLY": "this panel shows a local preview only; for recording, use a recorder: "
                    "CapturePanel(source=vdbnb.CaptureClient(...)) (or vdbnb.connect() first).",
    "EVENTS": "the event stream broke; check the server with `%vdbnb status` and run CapturePanel() again.",
    "BROWSER_NOT_STARTED": "press ● Start in the panel: a page may share a screen or the microphone only after "
                           "a click in it.",
    "NO_FRONT_END": "display the panel (a cell ending with `panel`), then press ● Start in it.",
    "SHARE_DENIED": "the browser was not allowed to share: press ● Start again and pick a screen, window or tab "
                    "(and allow the microphone; the address bar's site settings can undo an earlier 'Block').",
    "INGEST_UNREACHABLE": "the page reaches the vdbnb server neither directly nor through the Jupyter server: "
                          "is the server running (`%vdbnb status`) and the vdbnb server extension enabled "
                          "(`jupyter server extension list`)? Fragments wait in the browser and are sent once it "
                          "connects.",
}


def hint(code: str | None, default: str = "see panel.errors for details; re-run the cell to retry.") -> str:
    return HINTS.get(code or "", default)
