"""Alerts: the built-in detectors' findings (API keys, passwords, card numbers, e-mail addresses in what was
said or shown) raised the moment the redaction step finds them, before the redacted result goes to any engine,
the store, websockets or webhooks; plus user alerts (create_event + index.create_alert) matched against that
index's results.

A built-in alert carries the kind, the place (channel, field, box on the screen), the media time and the
secret's fingerprint (vdbnb.redaction), never a character of the secret."""
from __future__ import annotations

import logging
import re

import numpy as np

from ...events import ALERT, KERNEL, TRANSCRIPT, Event, event_id
from ...redaction import SecretFinding
from ..store import now

log = logging.getLogger("vdbnb.server.pipelines.alerts")
DETECTOR_WORDS = {
    "api_key": ("api key", "api-key", "apikey", "secret key", "access key", "token", "secret", "credential"),
    "private_key": ("private key", "secret", "credential", "key"),
    "password": ("password", "passphrase", "passcode", "credential", "secret"),
    "credit_card": ("credit card", "card number", "payment card", "visa", "mastercard", "pan"),
    "email": ("email", "e-mail", "mail address", "personal data", "pii", "contact"),
}
SIMILARITY_THRESHOLD = 0.5
_WHERE = {"text": "", "ocr_text": "on screen", "window_title": "in a window title", "new_text": "on screen"}


def _matches(prompt: str, label: str) -> bool:
    p = prompt.lower()
    return any(w in p for w in DETECTOR_WORDS.get(label, ()))


def describe(f: SecretFinding, src: Event) -> str:
    """An alert's text: what and where, nothing of the secret."""
    if src.channel == TRANSCRIPT:
        where = "spoken"
    elif src.channel == KERNEL:
        where = "in a notebook cell"
    else:
        where = _WHERE.get((f.field or "").split(".")[0], "") or \
            ("on screen" if src.channel_id == "screen" else "in text")
    return f"{f.label.replace('_', ' ')} {where}".strip() + (" (redacted)" if f.redacted else "")


class AlertEngine:
    def __init__(self, pipes):
        self.p = pipes
        self.ctx = pipes.ctx

    def secrets(self, src: Event, findings: list[SecretFinding], target_ws: str | None) -> None:
        """One alert per finding, emitted now: ``src`` is the (already redacted) result the findings came
        from, not yet stored or sent anywhere."""
        secret_alerts(self.p.ctx.bus, src, findings, target_ws)

    def backstop(self, ev: Event, target_ws: str | None) -> list[SecretFinding]:
        """The last check before ``ev`` is stored: a secret still in its text or data (an LLM's answer, a
        notebook cell, a path that skipped redaction) is redacted here and alerted. Returns what it found."""
        r = self.p.redactor
        red = r.text(ev.text, "text")
        data, found = r.value(ev.data or {})
        found = red.findings + found
        if found:
            ev.text, ev.data = red.text, data
            ev.data["redacted"] = sorted(set(ev.data.get("redacted") or []) |
                                         {f.label for f in found if f.redacted})
            self.secrets(ev, found, target_ws)
        return found

    def user_alerts(self, ev: Event, findings: list[SecretFinding]) -> None:
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
                sim = self._similarity(a["event_prompt"], (ev.text or "") + " " + (ev.data.get("ocr_text") or ""))
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
        _emit(self.p.ctx.bus, src, label, conf, text, data, target_ws, webhook_url, webhook_body)


def secret_alerts(bus, src: Event, findings: list[SecretFinding], target_ws: str | None) -> None:
    """The built-in alert of each finding (kind, place, media time, fingerprint; never a character of the
    secret) through ``bus``, now: before ``src`` (already redacted) is stored or sent anywhere. The kernel
    channel calls this too, with or without the AI pipelines."""
    for f in findings:
        data = {"builtin": True, "source_event_id": src.id, "source_channel": src.channel,
                "redacted": f.redacted, **f.place()}
        _emit(bus, src, f.label, f.confidence, describe(f, src), data, target_ws)


def _emit(bus, src: Event, label: str, conf: float, text: str, data: dict, target_ws: str | None,
          webhook_url: str | None = None, webhook_body: dict | None = None) -> None:
    ev = Event(channel=ALERT, session_id=src.session_id, collection_id=src.collection_id,
               rtstream_id=src.rtstream_id, rtstream_name=src.rtstream_name, channel_id=src.channel_id,
               index_id=src.index_id, label=label, confidence=round(conf, 3), text=text, start=src.start,
               end=src.end, engine="vdbnb-detectors" if data.get("builtin") else src.engine,
               captured_at=src.captured_at, processed_at=now(), data=data,
               id=event_id(src.id, ALERT, label, data.get("alert_id") or data.get("field"), text))
    bus.emit(ev, target_ws=target_ws, webhook_url=webhook_url, webhook_body=webhook_body)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
