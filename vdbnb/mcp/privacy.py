"""The last pass before anything reaches an agent.

The server already redacts high-risk secrets before it stores a result, the recorder blacks out excluded
windows (and drops their titles) before it encodes a frame, and the frame endpoint blacks out every text line
that holds a secret. This pass runs on every string a tool or resource returns, whatever its source: every
kind of finding of the secret scanner (keys, passwords, card numbers, e-mail addresses) is replaced by its
label, and items marked private (a private notebook cell, an excluded window) are dropped.
"""
from __future__ import annotations

from typing import Any

PRIVATE_FLAGS = ("private", "excluded")


def redact_text(text: str) -> str:
    from ..ai.secrets import redact
    return redact(text, mask="[redacted {label}]")


def clean(value: Any) -> Any:
    """``value`` with every secret in every string (inside dicts and lists too) replaced by its label."""
    if isinstance(value, str):
        return redact_text(value) if value else value
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def is_private(event: dict) -> bool:
    """An event that must never reach an agent: marked private or excluded by whoever produced it."""
    data = event.get("data") or {}
    return any(bool(data.get(flag)) or bool(event.get(flag)) for flag in PRIVATE_FLAGS)
