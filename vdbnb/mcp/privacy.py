"""The last pass before anything reaches an agent.

The server already redacts high-risk secrets before it stores a result, the recorder blacks out excluded
windows (and drops their titles) before it encodes a frame, and the frame endpoint blacks out every text line
that holds a secret. This pass runs on every string a tool or resource returns, whatever its source: the one
redaction step (vdbnb/redaction.py, the server's) replaces every kind of finding (keys, passwords, card numbers,
e-mail addresses) by the same ``[label redacted]`` mask the server writes, and leaves the server's masks as
they are; items marked private (a private notebook cell, an excluded window) are dropped.
"""
from __future__ import annotations

from typing import Any

from ..redaction import get_redactor

PRIVATE_FLAGS = ("private", "excluded")


def redact_text(text: str) -> str:
    return get_redactor().text(text).text


def clean(value: Any) -> Any:
    """``value`` with every secret in every string (inside dicts, lists and tuples too) replaced by its mask."""
    return get_redactor().value(value)[0]


def is_private(event: dict) -> bool:
    """An event that must never reach an agent: marked private or excluded by whoever produced it."""
    data = event.get("data") or {}
    return any(bool(data.get(flag)) or bool(event.get(flag)) for flag in PRIVATE_FLAGS)
