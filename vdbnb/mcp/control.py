"""start_capture / stop_capture: an agent starts and stops a capture of this desktop, only when the user ran
``vdbnb mcp --allow-control`` (off by default), and on HTTP only with the API key (an agent token is
read-only). The capture runs vdbnb's recorder as a child of this server; it is stopped with the server."""
from __future__ import annotations

import threading
from typing import Annotated, Optional

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from .audit import Audit, Refused
from .backend import Backend
from .tools import _result

CONTROL = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
CONTROL_SCOPE = "vdbnb:control"
VISUAL_PROMPT = "What is on the screen: the active window and the text a person would read"
DEFAULT = ("displays", "mic")


class CaptureState(BaseModel):
    session_id: Optional[str] = None
    status: str
    channels: list[str] = []
    transcribing: list[str] = []
    indexing: list[str] = []


def select_channels(chans, wanted: list[str] | None) -> list:
    """Recorder channels for names an agent uses: mic / microphone, system_audio, displays / screen (all
    displays), display:N or N (one display), or exact channel ids."""
    picked: list = []
    for name in wanted or DEFAULT:
        n = name.strip().lower()
        if n in ("mic", "mics", "microphone"):
            got = [chans.mics.default]
        elif n in ("system_audio", "system-audio", "speakers", "system"):
            got = [chans.system_audio.default]
        elif n in ("displays", "screens", "screen", "display", "all displays"):
            got = list(chans.displays)
        else:
            n = n if ":" in n else f"display:{n}" if n.isdigit() else n
            got = [chans.get(n)]
        got = [c for c in got if c is not None]
        if not got:
            have = ", ".join(c.id for c in chans.all()) or "none"
            raise ValueError(f"no capture channel matches {name!r} on this desktop; channels here: {have}")
        picked += [c for c in got if c not in picked]
    return picked


class ControlTools:
    def __init__(self, backend: Backend, audit: Audit, allowed: bool):
        self.b = backend
        self.audit = audit
        self.allowed = allowed
        self.client = None
        self.session = None
        self._lock = threading.Lock()

    def register(self, mcp) -> None:
        for fn in (self.start_capture, self.stop_capture):
            mcp.add_tool(fn, annotations=CONTROL)

    def _check(self) -> None:
        if not self.allowed:
            raise Refused("Capture control is off: this vdbnb MCP server only reads what was captured. The user "
                          "can allow agents to start and stop captures by running `vdbnb mcp --allow-control`.")
        from mcp.server.auth.middleware.auth_context import get_access_token
        tok = get_access_token()
        if tok is not None and CONTROL_SCOPE not in tok.scopes:
            raise Refused("This credential is a read-only agent token; starting or stopping a capture needs the "
                          "vdbnb API key.")

    async def start_capture(self, ctx: Context,
                            channels: Annotated[Optional[list[str]], Field(
                                description="what to record: 'displays' (all), 'display:1', 'mic', 'system_audio', or "
                                            "channel ids (default: all displays and the default microphone)")] = None,
                            ) -> Annotated[CallToolResult, CaptureState]:
        """Start capturing this desktop (screens, microphone, system audio) with live transcription and screen
        indexing. Only allowed when the user ran `vdbnb mcp --allow-control`."""
        def run():
            self._check()
            with self._lock:
                if self.client is not None:
                    st = self._state("active")
                    return _result(f"already capturing: session {st.session_id} ({', '.join(st.channels)})", st), \
                        1, st.session_id
                st = self._start(channels)
            text = (f"capturing: session {st.session_id} records {', '.join(st.channels)}; transcribing "
                    f"{', '.join(st.transcribing) or 'nothing'}; indexing {', '.join(st.indexing) or 'no screen'}. "
                    "Call stop_capture to stop.")
            return _result(text, st), 1, st.session_id
        return await self.audit.run(ctx, "start_capture", {"channels": channels}, run)

    async def stop_capture(self, ctx: Context) -> Annotated[CallToolResult, CaptureState]:
        """Stop the capture that start_capture started (its media and results stay stored and searchable)."""
        def run():
            self._check()
            with self._lock:
                if self.client is None:
                    raise ValueError("no capture started by this server is running (start_capture starts one)")
                sid = self.session.id
                res = self.stop()
            st = CaptureState(session_id=sid, status="stopped", channels=[])
            text = f"stopped session {sid}" + (f" ({res.get('status')})" if isinstance(res, dict) else "")
            return _result(text, st), 1, sid
        return await self.audit.run(ctx, "stop_capture", {}, run)

    # ---- the capture itself (blocking; called from a worker thread)
    def _start(self, wanted: list[str] | None) -> CaptureState:
        from ..capture import SyncCaptureClient
        conn = self.b.conn
        cap = conn.create_capture_session(end_user_id="vdbnb-mcp", metadata={"started_by": "vdbnb mcp"})
        client = SyncCaptureClient(conn.generate_client_token(expires_in=7 * 86400), conn.base_url)
        try:
            chosen = select_channels(client.list_channels(), wanted)
            for c in chosen:
                c.store = True
            client.start_session(cap.id, chosen)
            cap.wait_for("active", timeout=60)
        except Exception:
            client.shutdown()
            raise
        self.client, self.session = client, cap
        for r in cap.rtstreams:
            if r.channel_id == "screen":
                r.index_visuals(prompt=VISUAL_PROMPT, batch_config={"type": "time", "value": 2, "frame_count": 1})
            else:
                r.start_transcript()
        return self._state("active")

    def _state(self, status: str) -> CaptureState:
        streams = self.session.refresh().rtstreams
        return CaptureState(session_id=self.session.id, status=status,
                            channels=[r.source_channel_id for r in streams],
                            transcribing=[r.source_channel_id for r in streams if r.channel_id != "screen"],
                            indexing=[r.source_channel_id for r in streams if r.channel_id == "screen"])

    def stop(self) -> dict | None:
        """Stop the recorder this server started (also called when the server exits)."""
        client, self.client = self.client, None
        if client is None:
            return None
        try:
            return client.stop_session()
        finally:
            client.shutdown()
