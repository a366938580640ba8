"""The recorder process: the commands of the line protocol (docs/recorder-protocol.md) on an asyncio loop —
channels, previews, pause, stats — and one :class:`~vdbnb.recorder.session.Recording` at a time.

Jobs live beside it: :mod:`.protocol` (reading commands, writing responses and events), :mod:`.session`
(a recording: uplink, encoder pipelines, start and stop), :mod:`.sources` (screen and audio capture threads),
:mod:`.devices` / :mod:`.pulse` (channel discovery, the sound server and its watcher), :mod:`.resend`."""
from __future__ import annotations

import asyncio
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path

from vdbnb.config import Settings
from vdbnb.recorder import devices, pulse
from vdbnb.recorder.protocol import CommandError, LineProtocol
from vdbnb.recorder.session import Recording, channel_dicts
from vdbnb.recorder.audio import AudioSource
from vdbnb.recorder.screen import ScreenSource
from vdbnb.recorder.x11 import WindowTracker

VERSION = "0.1.0"


class Recorder:
    def __init__(self, out=None, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.proto = LineProtocol(out)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api_url: str | None = self.settings.url
        self.tracker = WindowTracker()
        self.sources: dict[str, ScreenSource | AudioSource] = {}
        self.session: Recording | None = None
        self.preview_channels: set[str] = set()
        self._op_lock: asyncio.Lock | None = None
        self._done: asyncio.Event | None = None
        self.log_level = "info"
        self._chan_cache: dict[str, devices.ChannelInfo] = {}
        self.watcher = pulse.SourceWatcher(self._sources_changed)

    # ---------------------------------------------------------------- output
    def emit(self, event: str, payload: dict):
        self.proto.emit(event, payload)

    def log(self, *a):
        if self.log_level in ("debug", "info"):
            print("[vdbnb-recorder]", *a, file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- main loop
    async def run(self, stdin=None):
        self.loop = asyncio.get_running_loop()
        self._op_lock = asyncio.Lock()
        self._done = asyncio.Event()
        if await self.proto.serve(self, stdin or sys.stdin, self._done):
            self.log("stdin closed: stopping")
            await self._shutdown()

    # ---------------------------------------------------------------- commands
    async def cmd_init(self, p):
        if p.get("apiUrl"):
            self.api_url = p["apiUrl"]
        self.log_level = p.get("logLevel", self.log_level)
        return {"version": VERSION, "platform": platform.system().lower(), "pid": os.getpid(),
                "apiUrl": self.api_url, "preview": True}

    async def cmd_ping(self, p):
        return {"pong": True, "ts": time.time(), "recording": self.session is not None}

    async def cmd_setLogLevel(self, p):
        self.log_level = p.get("level") or p.get("logLevel") or "info"
        return {"level": self.log_level}

    async def cmd_getLogLevel(self, p):
        return {"level": self.log_level}

    async def _list(self) -> tuple[list[devices.ChannelInfo], list[dict]]:
        chans, problems = await asyncio.to_thread(devices.list_channels, self.settings)
        self._chan_cache = {c.channel_id: c for c in chans}
        return chans, problems

    async def _perm_status(self) -> dict:
        chans, problems = await self._list()
        has_v = any(c.type == "video" for c in chans)
        has_a = any(c.type == "audio" for c in chans)
        return {"microphone": "granted" if has_a else "denied",
                "screen-capture": "granted" if has_v else "denied",
                "accessibility": "granted", "problems": problems}

    async def cmd_requestPermission(self, p):
        kind = p.get("permission", "")
        st = await self._perm_status()
        status = st.get(kind, "granted")
        self.emit("permission-status", {"permission": kind, "status": status})
        res = {"permission": kind, "status": status, "requested": status == "granted"}
        if status != "granted":
            res["message"] = "; ".join(x["message"] for x in st["problems"]) or "no device"
        return res

    async def cmd_getPermissionStatus(self, p):
        return await self._perm_status()

    async def cmd_getChannels(self, p):
        chans, problems = await self._list()
        return {"channels": [c.to_dict() for c in chans], "problems": problems}

    async def cmd_getDisplays(self, p):
        chans, _ = await self._list()
        return {"displays": [c.to_dict() for c in chans if c.type == "video"]}

    async def cmd_getCameras(self, p):
        return {"cameras": []}

    # ---------------------------------------------------------------- sources
    def _lost_cb(self, cid: str, reason: str):
        if self.loop:
            self.loop.call_soon_threadsafe(self._channel_lost, cid, reason)

    def _channel_lost(self, cid: str, reason: str):
        src = self.sources.pop(cid, None)
        s = self.session
        if src is None and (s is None or cid in s.lost or cid not in s.pipelines):
            return  # already reported
        self.preview_channels.discard(cid)
        if src:
            threading.Thread(target=src.stop, daemon=True).start()
        if s:
            s.lose(cid, reason)
        self.emit("channel-lost", {"channel_id": cid, "reason": reason, "sessionId": s.sid if s else None})
        self.emit("error", {"code": "CHANNEL_LOST", "channel_id": cid,
                            "message": f"{cid} stopped: {reason}; the other channels go on"})

    def _sources_changed(self):
        if self.loop:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._check_sources()))

    async def _check_sources(self):
        audio = {cid: src for cid, src in self.sources.items() if isinstance(src, AudioSource)}
        if not audio:
            return
        try:
            names = {s.name for s in await asyncio.to_thread(pulse.sources)}
        except Exception as e:  # noqa: BLE001 - the sound server itself went away
            names = set()
            why = f"sound server unavailable: {e}"
        else:
            why = None
        for cid, src in audio.items():
            if src.source not in names:
                self._channel_lost(cid, why or f"audio source {src.source!r} was removed from the sound server")

    def _source(self, info: devices.ChannelInfo):
        src = self.sources.get(info.channel_id)
        if src is not None:
            return src
        if info.type == "video":
            idx = int(info.channel_id.split(":", 1)[1])
            src = ScreenSource(info.channel_id, idx, self.tracker, self.emit, self._lost_cb)
        else:
            src = AudioSource(info.channel_id, info.extra["source"], self.emit, self._lost_cb,
                              backend=self.settings.audio_backend, emit_many=self.proto.emit_many)
            self.watcher.start()
        self.sources[info.channel_id] = src
        return src

    async def _resolve(self, ids: list[str]) -> tuple[list[devices.ChannelInfo], list[dict]]:
        chans, problems = await self._list()
        by_id = {c.channel_id: c for c in chans}
        ok, bad = [], []
        for cid in ids:
            if cid in by_id:
                ok.append(by_id[cid])
            else:
                kind = "display" if cid.split(":", 1)[0] in ("display", "screen") else "audio"
                why = next((x for x in problems if x.get("kind") == kind
                            and (kind == "display" or x["code"] != "NO_MICROPHONE" or cid.startswith("mic:"))), None)
                avail = ", ".join(sorted(by_id)) or "none"
                bad.append({"channel_id": cid, "code": why["code"] if why else "UNKNOWN_CHANNEL",
                            "message": f"unknown or unavailable channel {cid!r}"
                                       + (f": {why['message']}" if why else "") + f" (available: {avail})",
                            **({"hint": why["hint"]} if why else {})})
        return ok, bad

    async def cmd_startPreview(self, p):
        ids = p.get("channels")
        if not ids:
            chans, _ = await self._list()
            ids = [c.channel_id for c in chans if c.type == "video"]
            ids += [c for c in ("mic:default", "system_audio:default") if c in self._chan_cache]
        ids = [i["channel_id"] if isinstance(i, dict) else i for i in ids]
        ok, bad = await self._resolve(ids)
        for info in ok:
            src = self._source(info)
            src.preview = True
            if isinstance(src, ScreenSource):
                if p.get("thumbnail_fps"):
                    src.thumb_fps = max(0.2, float(p["thumbnail_fps"]))
                if p.get("thumbnail_width"):
                    src.thumb_width = int(p["thumbnail_width"])
            await asyncio.to_thread(src.update)
            self.preview_channels.add(info.channel_id)
        for b in bad:
            self.emit("error", b)
        return {"channels": [i.channel_id for i in ok], "errors": bad}

    async def cmd_stopPreview(self, p):
        ids = p.get("channels") or list(self.preview_channels)
        for cid in ids:
            src = self.sources.get(cid)
            if src:
                src.preview = False
                await asyncio.to_thread(src.update)
            self.preview_channels.discard(cid)
        return {"channels": ids}

    # ---------------------------------------------------------------- recording
    async def cmd_startRecording(self, p):
        async with self._op_lock:
            self._check_can_start(p)
            requested = self._requested_channels(p)
            # channels another process records over the same ingest (the notebook kernel's cells): declared to
            # the server in R1 with the media channels, never captured here
            external = [cid for cid, d in requested.items() if d.get("type") == "kernel" or cid.startswith("kernel:")]
            ok, bad = await self._resolve([cid for cid in requested if cid not in external])
            if not ok and not external:
                raise CommandError("UNKNOWN_CHANNEL", "; ".join(
                    b["message"] + (f". What to do: {b['hint']}" if b.get("hint") else "") for b in bad))
            chans = channel_dicts(ok, requested, p.get("primary_video_channel_id"))
            chans += [{"channel_id": cid, "type": "kernel", "name": requested[cid].get("name") or cid,
                       "store": bool(requested[cid].get("store", False)), "is_primary": False} for cid in external]
            spool_root = Path(p.get("spoolDir") or self.settings.spool_root)
            rec = await Recording.open(p, self.api_url, spool_root, chans, self.emit)
            rec.build_pipelines(ok, p, self.loop)
            self.session = rec
            for info in ok:
                await rec.attach(self._source(info))
            for b in bad:
                self.emit("error", {**b, "sessionId": rec.sid})
            payload = rec.started_payload(bad)
            self.emit("recording-started", payload)
            return {"sessionId": rec.sid, "status": "recording", **payload}

    def _check_can_start(self, p: dict) -> None:
        if self.session is not None:
            raise CommandError("ALREADY_RECORDING", f"already recording session {self.session.sid}; "
                               "stop it (stopRecording) before starting another")
        if not p.get("sessionId") or not p.get("uploadToken"):
            raise CommandError("BAD_PARAMS", "startRecording needs sessionId and uploadToken")
        if not self.api_url:
            raise CommandError("NO_API_URL", "no server URL: send init {apiUrl} or set VDBNB_URL")
        if not p.get("channels"):
            raise CommandError("BAD_PARAMS", "startRecording needs at least one channel")

    @staticmethod
    def _requested_channels(p: dict) -> dict[str, dict]:
        """channel id -> its options (a channel may be given as an id or as {channel_id, name, store, ...})."""
        return {(c["channel_id"] if isinstance(c, dict) else c): (c if isinstance(c, dict) else {})
                for c in p.get("channels") or []}

    def _match_tracks(self, tracks) -> list[str]:
        s = self.session
        ids = list(s.pipelines) if s else list(self.sources)
        out = []
        for t in tracks or []:
            for cid in ids:
                typ = "video" if cid.startswith(("display", "screen")) else "audio"
                if (t == cid or (t in ("screen", "video", "display") and typ == "video")
                        or (t == "mic" and cid.startswith("mic"))
                        or (t in ("system_audio", "system-audio") and cid.startswith("system_audio"))
                        or (t == "audio" and typ == "audio")):
                    out.append(cid)
        return sorted(set(out))

    async def _set_paused(self, p, paused: bool):
        ids = self._match_tracks(p.get("tracks"))
        if not ids:
            raise CommandError("UNKNOWN_TRACK", f"no channel matches tracks {p.get('tracks')!r} "
                               "(use mic, system_audio, screen or a channel id)")
        for cid in ids:
            src = self.sources.get(cid)
            if src:
                src.paused = paused
        self.emit("tracks-paused" if paused else "tracks-resumed", {"channels": ids, "ts": time.time()})
        return {"channels": ids, "paused": paused,
                "note": "paused video is encoded as black frames, paused audio as silence"}

    async def cmd_pauseTracks(self, p):
        return await self._set_paused(p, True)

    async def cmd_resumeTracks(self, p):
        return await self._set_paused(p, False)

    async def cmd_stopRecording(self, p):
        async with self._op_lock:
            s = self.session
            if s is None:
                raise CommandError("NOT_RECORDING", "no recording to stop")
            if p.get("sessionId") and p["sessionId"] != s.sid:
                raise CommandError("WRONG_SESSION", f"recording session is {s.sid}, not {p['sessionId']}")
            return await self._stop(s, float(p.get("drainTimeout", 15.0)))

    async def _stop(self, s: Recording, drain_timeout: float) -> dict:
        try:
            return await s.stop(self.sources, self.emit, drain_timeout)
        finally:
            self.session = None

    async def _shutdown(self):
        if self.session is not None:
            try:
                await self._stop(self.session, 5.0)
            except Exception:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
        for src in list(self.sources.values()):
            await asyncio.to_thread(src.stop)
        self.sources.clear()
        self.watcher.stop()

    async def cmd_shutdown(self, p):
        async with self._op_lock:
            await self._shutdown()
        self._done.set()  # the response is written before the loop ends (dispatch writes it right away)
        return {"shutdown": True}

    async def cmd_stats(self, p):
        """vdbnb extension: counters for benchmarks and tests."""
        s = self.session
        rec = s.stats() if s else {"pipelines": {}, "upload": None, "unacked": None, "acked": None}
        threads: dict[str, int] = {}
        for t in threading.enumerate():   # name -> native id: a bench reads each one's CPU in /proc
            threads[t.name if t.name not in threads else f"{t.name}#{t.native_id}"] = t.native_id
        return {"events": dict(self.proto.counters),
                "sources": {c: dict(src.stats) for c, src in self.sources.items()}, "threads": threads, **rec}
