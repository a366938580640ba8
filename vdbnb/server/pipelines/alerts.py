"""Alerts: built-in offline detectors (API keys, passwords, card numbers, e-mail addresses) on everything
said or shown, raised BEFORE the text is stored (and high-risk secrets are redacted in what is stored);
plus user alerts (create_event + index.create_alert) matched against that index's results."""
from __future__ import annotations

import logging
import re

import numpy as np

from ...ai.secrets import REDACT_LABELS as REDACT
from ...events import ALERT, AUDIO_INDEX, KERNEL, TRANSCRIPT, VISUAL_INDEX, Event, event_id
from ..store import now

log = logging.getLogger("vdbnb.server.pipelines.alerts")
CHECKED = {TRANSCRIPT, AUDIO_INDEX, VISUAL_INDEX, KERNEL}
DETECTOR_WORDS = {
    "api_key": ("api key", "api-key", "apikey", "secret key", "access key", "token", "secret", "credential"),
    "password": ("password", "passphrase", "passcode", "credential", "secret"),
    "credit_card": ("credit card", "card number", "payment card", "visa", "mastercard", "pan"),
    "email": ("email", "e-mail", "mail address", "personal data", "pii", "contact"),
}
SIMILARITY_THRESHOLD = 0.5
WHERE = {TRANSCRIPT: "spoken", KERNEL: "in a notebook cell"}


def _mask(s: str) -> str:
    s = s.strip()
    return s[:4] + "…" + s[-2:] if len(s) > 8 else "…"


def _matches(prompt: str, label: str) -> bool:
    p = prompt.lower()
    return any(w in p for w in DETECTOR_WORDS.get(label, ()))


class AlertEngine:
    def __init__(self, pipes):
        self.p = pipes
        self.ctx = pipes.ctx

    def scan_and_redact(self, ev: Event, target_ws: str | None) -> None:
        """Called by the pipelines before ``ev`` is stored: raise alerts, redact high-risk secrets."""
        if ev.channel not in CHECKED or not ev.text or (ev.channel == TRANSCRIPT and not ev.is_final):
            return
        from ...ai.secrets import scan
        texts = {"text": ev.text}
        if ev.data.get("ocr_text"):
            texts["ocr_text"] = ev.data["ocr_text"]
        if ev.channel == KERNEL:  # a cell's outputs, error and traceback too (its source is the text)
            from ..kernel import search_text
            texts["cell"] = "\n".join([search_text(ev), ev.data.get("traceback") or ""])
        findings = []
        for field, t in texts.items():
            for f in scan(t):
                findings.append((field, f))
        for field, f in findings:
            self._emit(ev, f.label, float(f.confidence), f"{f.label.replace('_', ' ')} "
                       f"{WHERE.get(ev.channel, 'on screen')}: {_mask(f.match)}",
                       {"builtin": True, "detector": f.label, "source_event_id": ev.id, "field": field},
                       target_ws)
        secrets = [f.match for _, f in findings if f.label in REDACT]
        if secrets:
            ev.text = _redact(ev.text, secrets)
            ev.data = _redact(ev.data, secrets)
        if findings:
            ev.data["redacted"] = sorted({f.label for _, f in findings if f.label in REDACT})
        self._user_alerts(ev, [f for _, f in findings])

    def _user_alerts(self, ev: Event, findings) -> None:
        if not ev.index_id:
            return
        rows = self.ctx.store.all(
            "SELECT a.*, e.event_prompt, e.label FROM alerts a JOIN rt_events e ON e.id=a.event_id "
            "WHERE a.index_id=? AND a.status='enabled'", (ev.index_id,))
        for a in rows:
            conf, why = 0.0, ""
            for f in findings:
                if _matches(a["event_prompt"], f.label) and f.confidence > conf:
                    conf, why = float(f.confidence), f"{f.label.replace('_', ' ')} detected"
            if conf < SIMILARITY_THRESHOLD:
                sim = self._similarity(a["event_prompt"], ev.text + " " + (ev.data.get("ocr_text") or ""))
                if sim > conf:
                    conf, why = sim, f"matches the event prompt (similarity {sim:.2f})"
            if conf >= SIMILARITY_THRESHOLD:
                body = {"event_id": a["event_id"], "alert_id": a["id"], "label": a["label"], "confidence": conf,
                        "explanation": why, "timestamp": _iso(ev.start), "start_time": ev.start,
                        "end_time": ev.end, "rtstream_id": ev.rtstream_id, "capture_session_id": ev.session_id}
                self._emit(ev, a["label"], conf, why, {"alert_id": a["id"], "event_id": a["event_id"],
                                                       "source_event_id": ev.id}, a["ws_connection_id"],
                           a["callback_url"], body)

    @staticmethod
    def _similarity(prompt: str, text: str) -> float:
        try:
            from ...ai.embed import get_embedder
            v = get_embedder().embed([prompt, text[:2000]])
            return float(np.dot(v[0], v[1]))
        except Exception:
            pw = set(re.findall(r"\w+", prompt.lower()))
            tw = set(re.findall(r"\w+", text.lower()))
            return len(pw & tw) / max(1, len(pw))

    def _emit(self, src: Event, label: str, conf: float, text: str, data: dict, target_ws: str | None,
              webhook_url: str | None = None, webhook_body: dict | None = None) -> None:
        ev = Event(channel=ALERT, session_id=src.session_id, collection_id=src.collection_id,
                   rtstream_id=src.rtstream_id, rtstream_name=src.rtstream_name, channel_id=src.channel_id,
                   index_id=src.index_id, label=label, confidence=round(conf, 3), text=text, start=src.start,
                   end=src.end, engine="vdbnb-detectors" if data.get("builtin") else src.engine,
                   captured_at=src.captured_at, processed_at=now(), data=data,
                   id=event_id(src.id, ALERT, label, data.get("alert_id") or data.get("field"), text))
        self.p.ctx.bus.emit(ev, target_ws=target_ws, webhook_url=webhook_url, webhook_body=webhook_body)


def _redact(value, secrets: list[str]):
    """Replace every secret in a string, or in every string inside dicts/lists."""
    if isinstance(value, str):
        for sec in secrets:
            value = value.replace(sec, "[redacted]")
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
