"""Helpers for widget tests without a browser: a comm that records what would go to the front end.

The widget, its traitlets and ipywidgets' serialization are the real ones; only the transport to a browser
is replaced by a list (as a kernel without a front end would drop them).
"""
from __future__ import annotations

import time

import comm
import pytest
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):
    def __init__(self, *a, **kw):
        self.sent: list[tuple[float, str, dict, list]] = []
        super().__init__(*a, **kw)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.sent.append((time.monotonic(), msg_type, data or {}, list(buffers or [])))

    # views of what was sent
    def custom(self, kind: str | None = None):
        out = []
        for at, mt, data, bufs in list(self.sent):
            if mt == "comm_msg" and data.get("method") == "custom":
                c = data["content"]
                if kind is None or c.get("type") == kind:
                    out.append((at, c, bufs))
        return out

    def updates(self, key: str):
        return [data["state"][key] for _, mt, data, _ in list(self.sent)
                if mt == "comm_msg" and data.get("method") == "update" and key in data.get("state", {})]


@pytest.fixture
def recording_comm(monkeypatch):
    made: list[RecordingComm] = []

    def create_comm(*a, **kw):
        c = RecordingComm(*a, **kw)
        made.append(c)
        return c

    monkeypatch.setattr(comm, "create_comm", create_comm)
    return made


def front_msg(widget, content: dict, buffers=None):
    """Deliver a message to the widget exactly as the front end's model.send() would arrive."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": buffers or []})


def front_update(widget, **state):
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False
