"""The recorder process: the line protocol (docs/recorder-protocol.md) over stdin/stdout, an asyncio main
loop, device threads feeding encoders, the lossless uplink."""
from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path

from vdbnb.config import Settings, child_env
from vdbnb.media.encode import AudioEncoder, VideoEncoder
from vdbnb.media.fragmenter import Fragmenter
from vdbnb.recorder import devices
from vdbnb.recorder.sources import AudioSource, Privacy, ScreenSource
from vdbnb.recorder.uplink import Uplink, UplinkError
from vdbnb.recorder.x11 import WindowTracker

PREFIX = "videodb_recorder|"
VERSION = "0.1.0"

DEFAULT_VIDEO = {"fps": 2.0, "crf": 32, "gop_s": 2.0, "scale": None, "max_width": None, "preset": "veryfast",
                 "skip_static": True, "heartbeat_s": 60.0}
DEFAULT_AUDIO = {"bitrate": 12000, "channels": 1, "frame_ms": 60}


class CommandError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Pipeline:
    """Encoder + fragmenter of one channel; fed from its source thread, closed from the loop."""

    def __init__(self, cid: str, kind: str, enc, frag: Fragmenter, submit):
        self.cid, self.kind, self.enc, self.frag, self.submit = cid, kind, enc, frag, submit
        self.lock = threading.Lock()
        self.closed = False
        self.fragments = 0
        self.bytes = 0
        self.error: str | None = None

    def _out(self, frags):
        for f in frags:
            self.submit(f)
            self.fragments += 1
            self.bytes += len(f.payload)

    def feed_video(self, img, ts, meta):
        with self.lock:
            if self.closed:
                return
            try:
                self._out(self.frag.add(self.enc.encode(img, ts), meta))
            except Exception as e:  # noqa: BLE001
                self.error = f"video encode failed: {e}"

    def tick_video(self, ts):
        """A tick whose frame was not encoded (unchanged screen)."""
        with self.lock:
            if self.closed:
                return
            self._out(self.frag.tick(ts, self.enc.gop_s))

    def feed_audio(self, pcm, ts):
        with self.lock:
            if self.closed:
                return
            try:
                self._out(self.frag.add(self.enc.push(pcm, ts)))
            except Exception as e:  # noqa: BLE001
                self.error = f"audio encode failed: {e}"

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._out(self.frag.add(self.enc.flush()))
            except Exception as e:  # noqa: BLE001
                self.error = f"flush failed: {e}"
            self._out(self.frag.flush())


class Session:
    def __init__(self, sid: str, uplink: Uplink, channels: list[dict]):
        self.sid = sid
        self.uplink = uplink
        self.channels = channels
        self.pipelines: dict[str, Pipeline] = {}
        self.started_at = time.time()
        self.lost: dict[str, str] = {}


class SourceWatcher:
    """``pactl subscribe`` on a thread: when a source is removed, ``on_change()`` is called. PulseAudio moves a
    stream whose source vanished to another source (module-rescue-streams): without this, a vanished device would
    silently be replaced by the default one."""

    def __init__(self, on_change):
        self.on_change = on_change
        self.proc = None
        self.thread = None

    def start(self):
        import shutil
        import subprocess

        if self.thread is not None or not shutil.which("pactl"):
            return
        self.proc = subprocess.Popen(["pactl", "subscribe"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, env=child_env({"LC_ALL": "C"}))
        self.thread = threading.Thread(target=self._run, name="pactl-subscribe", daemon=True)
        self.thread.start()

    def _run(self):
        for line in self.proc.stdout:
            if "'remove' on source" in line or "on server" in line:
                self.on_change()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except Exception:  # noqa: BLE001
                self.proc.kill()
        self.thread = None


class Recorder:
    def __init__(self, out=None, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.out = out or sys.stdout
        self._out_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api_url: str | None = self.settings.url
        self.tracker = WindowTracker()
        self.sources: dict[str, ScreenSource | AudioSource] = {}
        self.session: Session | None = None
        self.preview_channels: set[str] = set()
        self._op_lock: asyncio.Lock | None = None
        self._done: asyncio.Event | None = None
        self.log_level = "info"
        self._chan_cache: dict[str, devices.ChannelInfo] = {}
        self.counters = {"thumbnail": 0, "audio-level": 0}
        self.watcher = SourceWatcher(self._sources_changed)

    # ---------------------------------------------------------------- output
    def write(self, msg: dict):
        line = PREFIX + json.dumps(msg, separators=(",", ":")) + "\n"
        with self._out_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def emit(self, event: str, payload: dict):
        if event in self.counters:
            self.counters[event] += 1
        self.write({"type": "event", "event": event, "payload": payload})

    def log(self, *a):
        if self.log_level in ("debug", "info"):
            print("[vdbnb-recorder]", *a, file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- main loop
    async def run(self, stdin=None):
        self.loop = asyncio.get_running_loop()
        self._op_lock = asyncio.Lock()
        self._done = asyncio.Event()
        stdin = stdin or sys.stdin
        eof = asyncio.Event()

        def reader():
            for raw in stdin:
                line = raw.strip()
                if not line.startswith(PREFIX):
                    continue
                try:
                    msg = json.loads(line[len(PREFIX):])
                except ValueError:
                    self.emit("error", {"code": "BAD_MESSAGE", "message": f"not JSON: {line[:200]}"})
                    continue
                self.loop.call_soon_threadsafe(lambda m=msg: asyncio.ensure_future(self.handle(m)))
            self.loop.call_soon_threadsafe(eof.set)

        threading.Thread(target=reader, name="stdin", daemon=True).start()
        w_eof = asyncio.create_task(eof.wait())
        w_done = asyncio.create_task(self._done.wait())
        await asyncio.wait({w_eof, w_done}, return_when=asyncio.FIRST_COMPLETED)
        if eof.is_set() and not self._done.is_set():
            self.log("stdin closed: stopping")
            await self._shutdown()

    async def handle(self, msg: dict):
        cmd = msg.get("command")
        cid = msg.get("commandId")
        params = msg.get("params") or {}
        fn = getattr(self, "cmd_" + str(cmd), None)
        if fn is None:
            self.write({"type": "response", "commandId": cid, "status": "error",
                        "result": {"code": "UNKNOWN_COMMAND", "message": f"unknown command {cmd!r}"}})
            return
        try:
            result = await fn(params)
            self.write({"type": "response", "commandId": cid, "status": "success", "result": result or {}})
        except CommandError as e:
            self.write({"type": "response", "commandId": cid, "status": "error",
                        "result": {"code": e.code, "message": e.message}})
        except UplinkError as e:
            self.write({"type": "response", "commandId": cid, "status": "error",
                        "result": {"code": e.code, "message": e.message}})
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            self.write({"type": "response", "commandId": cid, "status": "error",
                        "result": {"code": "INTERNAL", "message": f"{type(e).__name__}: {e}"}})
        if cmd == "shutdown":
            self._done.set()

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
        chans, problems = await asyncio.to_thread(devices.list_channels, self.settings.display)
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
        if src is None and (self.session is None or cid in self.session.lost
                            or cid not in self.session.pipelines):
            return  # already reported
        self.preview_channels.discard(cid)
        if src:
            threading.Thread(target=src.stop, daemon=True).start()
        s = self.session
        if s and cid in s.pipelines and cid not in s.lost:
            s.lost[cid] = reason
            s.pipelines[cid].close()
        self.emit("channel-lost", {"channel_id": cid, "reason": reason,
                                   "sessionId": s.sid if s else None})
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
            names = {x["name"] for x in devices.parse_sources(await asyncio.to_thread(devices._pactl, "list",
                                                                                      "sources"))}
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
                              backend=self.settings.audio_backend)
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
                kind = cid.split(":", 1)[0]
                why = next((x["message"] for x in problems
                            if (kind == "display" and x["code"] == "NO_DISPLAY")
                            or (kind != "display" and x["code"] == "NO_SOUND_SERVER")), None)
                avail = ", ".join(sorted(by_id)) or "none"
                bad.append({"channel_id": cid, "code": "UNKNOWN_CHANNEL",
                            "message": f"unknown or unavailable channel {cid!r}"
                                       + (f": {why}" if why else "") + f" (available: {avail})"})
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
            if self.session is not None:
                raise CommandError("ALREADY_RECORDING", f"already recording session {self.session.sid}; "
                                   "stop it (stopRecording) before starting another")
            sid = p.get("sessionId")
            token = p.get("uploadToken")
            if not sid or not token:
                raise CommandError("BAD_PARAMS", "startRecording needs sessionId and uploadToken")
            if not self.api_url:
                raise CommandError("NO_API_URL", "no server URL: send init {apiUrl} or set VDBNB_URL")
            req = p.get("channels") or []
            if not req:
                raise CommandError("BAD_PARAMS", "startRecording needs at least one channel")
            req_d = {(c["channel_id"] if isinstance(c, dict) else c): (c if isinstance(c, dict) else {})
                     for c in req}
            # channels another process records over the same ingest (the notebook kernel's cells): declared to
            # the server in R1 with the media channels, never captured here
            external = [cid for cid, d in req_d.items() if d.get("type") == "kernel" or cid.startswith("kernel:")]
            ok, bad = await self._resolve([cid for cid in req_d if cid not in external])
            if not ok and not external:
                raise CommandError("UNKNOWN_CHANNEL", "; ".join(b["message"] for b in bad))
            aopt = {**DEFAULT_AUDIO, **(p.get("audio") or {})}
            privacy = Privacy(p.get("privacy"))
            primary = p.get("primary_video_channel_id")
            chan_dicts = []
            for info in ok:
                d = req_d[info.channel_id]
                chan_dicts.append({"channel_id": info.channel_id, "type": info.type,
                                   "name": d.get("name") or info.name, "store": bool(d.get("store", False)),
                                   "is_primary": bool(d.get("is_primary")) or info.channel_id == primary})
            chan_dicts += [{"channel_id": cid, "type": "kernel", "name": req_d[cid].get("name") or cid,
                            "store": bool(req_d[cid].get("store", False)), "is_primary": False} for cid in external]
            t_cmd = time.time()
            spool_root = Path(p.get("spoolDir") or self.settings.spool_root)
            up = Uplink(self.api_url, token, sid, spool_root, emit=self.emit,
                        backoff_cap=float(p.get("backoffCap", 2.0)))
            extra = {k: p[k] for k in ("callbackUrl", "ws_connection_id", "primary_video_channel_id") if p.get(k)}
            if "callbackUrl" in extra:
                extra["callback_url"] = extra.pop("callbackUrl")
            try:
                await up.start(chan_dicts, extra)
            except UplinkError:
                await up.http.aclose()
                raise
            t_r1 = time.time()
            up.run()
            try:  # learn what the server already has (a restarted recorder resumes numbering)
                await asyncio.wait_for(up.connected.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            t_ws = time.time()
            sess = Session(sid, up, chan_dicts)
            submit = lambda f: up.submit_threadsafe(self.loop, f)  # noqa: E731
            per_chan = (p.get("video") or {}).get("channels") or {}
            for info in ok:
                seq0 = up.next_seq(info.channel_id)
                if info.type == "video":
                    vopt = {**DEFAULT_VIDEO, **{k: v for k, v in (p.get("video") or {}).items() if k != "channels"},
                            **(per_chan.get(info.channel_id) or {})}
                    info.extra["fps"] = float(vopt["fps"])
                    info.extra["skip_static"] = vopt["skip_static"]
                    info.extra["heartbeat_s"] = vopt["heartbeat_s"]
                    enc = VideoEncoder(info.extra["width"], info.extra["height"], fps=vopt["fps"],
                                             crf=int(vopt["crf"]), gop_s=float(vopt["gop_s"]),
                                             scale=vopt["scale"], max_width=vopt["max_width"],
                                             preset=vopt["preset"])
                    fr = Fragmenter(info.channel_id, "video", "h264",
                                          {**enc.codec_info, "gop_s": enc.gop_s}, start_seq=seq0)
                    pl = Pipeline(info.channel_id, "video", enc, fr, submit)
                else:
                    enc = AudioEncoder(channels=int(aopt["channels"]), bitrate=int(aopt["bitrate"]),
                                             frame_ms=int(aopt["frame_ms"]))
                    fr = Fragmenter(info.channel_id, "audio", "opus", enc.codec_info, start_seq=seq0,
                                          max_s=float(aopt.get("fragment_s", 0.25)))
                    pl = Pipeline(info.channel_id, "audio", enc, fr, submit)
                sess.pipelines[info.channel_id] = pl
            self.session = sess
            sess.started_at = time.time()
            for info in ok:
                src = self._source(info)
                pl = sess.pipelines[info.channel_id]
                if isinstance(src, ScreenSource):
                    src.enc_fps = float(info.extra.get("fps", DEFAULT_VIDEO["fps"]))
                    src.skip_static = bool(info.extra.get("skip_static", True))
                    src.heartbeat_s = float(info.extra.get("heartbeat_s", 60.0))
                    src._prev_raw = None
                    src.privacy = privacy
                    src.paused = False
                    src.encoder_cb = pl.feed_video
                    src.tick_cb = pl.tick_video
                else:
                    src.paused = False
                    src.encoder_cb = pl.feed_audio
                await asyncio.to_thread(src.update)
            for b in bad:
                self.emit("error", {**b, "sessionId": sid})
            payload = {"sessionId": sid, "channels": chan_dicts, "skipped": bad,
                       "spool_dir": str(up.spool.dir), "streams": up.streams,
                       "connected": up.connected.is_set(), "started_at": sess.started_at,
                       "timing": {"r1_s": round(t_r1 - t_cmd, 3), "hello_s": round(t_ws - t_r1, 3),
                                  "sources_s": round(time.time() - sess.started_at, 3)}}
            self.emit("recording-started", payload)
            return {"sessionId": sid, "status": "recording", **payload}

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

    async def _stop(self, s: Session, drain_timeout: float) -> dict:
        s.stopped_at = time.time()
        for cid in s.pipelines:
            src = self.sources.get(cid)
            if src:
                src.encoder_cb = None
                if isinstance(src, ScreenSource):
                    src.tick_cb = None
                src.paused = False
                if isinstance(src, ScreenSource):
                    src.privacy = Privacy()
                await asyncio.to_thread(src.update)
        for pl in s.pipelines.values():
            await asyncio.to_thread(pl.close)
        await asyncio.sleep(0)  # let call_soon_threadsafe enqueues land
        drained = await s.uplink.drain(drain_timeout)
        stop_err = None
        stop_data = None
        try:
            stop_data = await s.uplink.stop()
        except UplinkError as e:
            stop_err = {"code": e.code, "message": e.message}
        await s.uplink.close()
        unacked = s.uplink.unacked()
        left = s.uplink.spool.remove_if_empty() if not unacked else sum(unacked.values())
        rejected = [{k: m.get(k) for k in ("channel_id", "seq", "error_code", "message")} for m in s.uplink.rejected]
        payload = {"sessionId": s.sid,
                   "status": "complete" if drained and not stop_err and not rejected else "incomplete",
                   "started_at": s.started_at, "stopped_at": s.stopped_at,
                   "duration": s.stopped_at - s.started_at, "drain_s": round(time.time() - s.stopped_at, 3),
                   "fragments": {c: pl.fragments for c, pl in s.pipelines.items()},
                   "bytes": {c: pl.bytes for c, pl in s.pipelines.items()},
                   "acked": dict(s.uplink.acked_last), "unacked": unacked, "rejected": rejected,
                   "spool_dir": str(s.uplink.spool.dir) if left else None,
                   "lost_channels": s.lost, "stop": stop_data, "stop_error": stop_err,
                   "upload": dict(s.uplink.stats)}
        self.session = None
        if unacked:
            self.emit("error", {"code": "UPLOAD_INCOMPLETE", "sessionId": s.sid,
                                "message": f"{sum(unacked.values())} fragments were not acknowledged by the server "
                                           f"(last error: {s.uplink.last_error}); they are kept in "
                                           f"{s.uplink.spool.dir} and are resent when this session is started "
                                           f"again or with `python -m vdbnb.recorder --resend {s.uplink.spool.dir}`"})
        if stop_err:
            self.emit("error", {"code": stop_err["code"], "sessionId": s.sid,
                                "message": "stop (R3) failed: " + stop_err["message"]})
        self.emit("recording-complete", payload)
        return payload

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
        return {"shutdown": True}

    async def cmd_stats(self, p):
        """vdbnb extension: counters for benchmarks and tests."""
        s = self.session
        return {"events": dict(self.counters),
                "sources": {c: dict(src.stats) for c, src in self.sources.items()},
                "pipelines": {c: {"fragments": pl.fragments, "bytes": pl.bytes, "error": pl.error}
                              for c, pl in (s.pipelines.items() if s else [])},
                "upload": dict(s.uplink.stats) if s else None,
                "unacked": s.uplink.unacked() if s else None,
                "acked": dict(s.uplink.acked_last) if s else None}


async def resend_spool(spool_dir: Path, api_url: str, token: str, timeout: float = 60) -> dict:
    """Resend the fragments a stopped recorder kept (server was down). Session id = the folder name."""
    sid = Path(spool_dir).name
    up = Uplink(api_url, token, sid, Path(spool_dir).parent)
    up.pending = up.spool.pending()
    base = api_url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    up.ingest_url = f"{base}/capture/session/{sid}/ingest"
    up.run()
    ok = await up.drain(timeout)
    await up.close()
    left = up.spool.remove_if_empty()
    return {"sessionId": sid, "complete": ok, "left": left, "acked": up.acked_last, "rejected": up.rejected}
