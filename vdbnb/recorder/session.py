"""One capture session inside the recorder: R1 and the ingest websocket (the uplink), an encoder pipeline per
channel (encoder + fragmenter, fed from the source threads), the sources attached to them, and the stop that
drains everything and reports what the server has."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable

from vdbnb.media.encode import AudioEncoder, VideoEncoder
from vdbnb.media.fragmenter import Fragmenter
from vdbnb.recorder.devices import ChannelInfo
from vdbnb.recorder.audio import AudioSource
from vdbnb.recorder.screen import Privacy, ScreenSource
from vdbnb.recorder.uplink import Uplink, UplinkError

# gop_s: a keyframe at least every 120 s; fragment_s: fragments of <= 2 s continue the GOP (docs/ingest.md)
DEFAULT_VIDEO = {"fps": 2.0, "crf": 32, "gop_s": 120.0, "fragment_s": 2.0, "scale": None, "max_width": None,
                 "preset": "veryfast", "tune": "zerolatency", "x264": None, "skip_static": True, "heartbeat_s": 60.0}
DEFAULT_AUDIO = {"bitrate": 12000, "channels": 1, "frame_ms": 60}


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
            self._out(self.frag.tick(ts))

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


def channel_dicts(ok: list[ChannelInfo], requested: dict[str, dict], primary: str | None) -> list[dict]:
    """The channels as R1 sends them: name, whether stored, which video is primary."""
    out = []
    for info in ok:
        d = requested[info.channel_id]
        out.append({"channel_id": info.channel_id, "type": info.type, "name": d.get("name") or info.name,
                    "store": bool(d.get("store", False)),
                    "is_primary": bool(d.get("is_primary")) or info.channel_id == primary})
    return out


def video_options(p: dict, channel_id: str) -> dict:
    """startRecording's ``video`` options for one channel: defaults < session-wide < ``video.channels[id]``."""
    video = p.get("video") or {}
    per_chan = video.get("channels") or {}
    return {**DEFAULT_VIDEO, **{k: v for k, v in video.items() if k != "channels"},
            **(per_chan.get(channel_id) or {})}


class Recording:
    """A session being recorded: its uplink, a pipeline per channel and the options its sources run with."""

    def __init__(self, sid: str, uplink: Uplink, channels: list[dict]):
        self.sid = sid
        self.uplink = uplink
        self.channels = channels
        self.pipelines: dict[str, Pipeline] = {}
        self.video_opts: dict[str, dict] = {}
        self.privacy = Privacy()
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.lost: dict[str, str] = {}
        self.timing: dict[str, float] = {}

    # ---------------------------------------------------------------- start, step by step
    @classmethod
    async def open(cls, p: dict, api_url: str, spool_root: Path, channels: list[dict],
                   emit: Callable[[str, dict], None]) -> "Recording":
        """R1 (the server creates the streams and says what it already has), then the ingest websocket, which
        is given up to 2 s to say which fragments it holds (a restarted recorder resumes numbering)."""
        t_cmd = time.time()
        sid, token = p["sessionId"], p["uploadToken"]
        up = Uplink(api_url, token, sid, spool_root, emit=emit, backoff_cap=float(p.get("backoffCap", 2.0)))
        extra = {k: p[k] for k in ("callbackUrl", "ws_connection_id", "primary_video_channel_id") if p.get(k)}
        if "callbackUrl" in extra:
            extra["callback_url"] = extra.pop("callbackUrl")
        try:
            await up.start(channels, extra)
        except UplinkError:
            await up.http.aclose()
            raise
        t_r1 = time.time()
        up.run()
        try:
            await asyncio.wait_for(up.connected.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
        rec = cls(sid, up, channels)
        rec.privacy = Privacy(p.get("privacy"))
        rec.timing = {"r1_s": round(t_r1 - t_cmd, 3), "hello_s": round(time.time() - t_r1, 3)}
        return rec

    def build_pipelines(self, ok: list[ChannelInfo], p: dict, loop: asyncio.AbstractEventLoop) -> None:
        """An encoder and a fragmenter per channel, numbering from where the server and the spool left off."""
        aopt = {**DEFAULT_AUDIO, **(p.get("audio") or {})}
        up = self.uplink

        def submit(f):
            up.submit_threadsafe(loop, f)

        for info in ok:
            seq0 = up.next_seq(info.channel_id)
            if info.type == "video":
                vopt = self.video_opts[info.channel_id] = video_options(p, info.channel_id)
                enc = VideoEncoder(info.extra["width"], info.extra["height"], fps=vopt["fps"], crf=int(vopt["crf"]),
                                   gop_s=float(vopt["gop_s"]), scale=vopt["scale"], max_width=vopt["max_width"],
                                   preset=vopt["preset"], tune=vopt["tune"], x264=vopt["x264"])
                fr = Fragmenter(info.channel_id, "video", "h264", enc.codec_info, start_seq=seq0,
                                max_s=float(vopt["fragment_s"]))
            else:
                enc = AudioEncoder(channels=int(aopt["channels"]), bitrate=int(aopt["bitrate"]),
                                   frame_ms=int(aopt["frame_ms"]))
                fr = Fragmenter(info.channel_id, "audio", "opus", enc.codec_info, start_seq=seq0,
                                max_s=float(aopt.get("fragment_s", 0.25)))
            self.pipelines[info.channel_id] = Pipeline(info.channel_id, info.type, enc, fr, submit)
        self.started_at = time.time()

    async def attach(self, src: ScreenSource | AudioSource) -> None:
        """Feed a channel's source into its pipeline (privacy and the encoder's rate for a screen)."""
        pl = self.pipelines[src.channel_id]
        if isinstance(src, ScreenSource):
            vopt = self.video_opts.get(src.channel_id) or DEFAULT_VIDEO
            await asyncio.to_thread(src.record, pl.feed_video, pl.tick_video, self.privacy, float(vopt["fps"]),
                                    bool(vopt["skip_static"]), float(vopt["heartbeat_s"]))
        else:
            await asyncio.to_thread(src.record, pl.feed_audio)

    def started_payload(self, skipped: list[dict]) -> dict[str, Any]:
        up = self.uplink
        return {"sessionId": self.sid, "channels": self.channels, "skipped": skipped,
                "spool_dir": str(up.spool.dir), "streams": up.streams, "connected": up.connected.is_set(),
                "started_at": self.started_at,
                "timing": {**self.timing, "sources_s": round(time.time() - self.started_at, 3)}}

    # ---------------------------------------------------------------- channel lost
    def lose(self, cid: str, reason: str) -> bool:
        """A channel's device went away: its pipeline closes, the others go on. False if already known."""
        if cid not in self.pipelines or cid in self.lost:
            return False
        self.lost[cid] = reason
        self.pipelines[cid].close()
        return True

    # ---------------------------------------------------------------- stop, step by step
    async def stop(self, sources: dict, emit: Callable[[str, dict], None], drain_timeout: float) -> dict:
        """Detach the sources, flush the pipelines, wait for the server's acks (``drain_timeout``), R3, and
        report what was stored, what is still spooled and what was rejected."""
        self.stopped_at = time.time()
        for cid in self.pipelines:
            src = sources.get(cid)
            if src:
                await asyncio.to_thread(src.unrecord)
        for pl in self.pipelines.values():
            await asyncio.to_thread(pl.close)
        await asyncio.sleep(0)  # let call_soon_threadsafe enqueues land
        up = self.uplink
        drained = await up.drain(drain_timeout)
        stop_err = stop_data = None
        try:
            stop_data = await up.stop()
        except UplinkError as e:
            stop_err = {"code": e.code, "message": e.message}
        await up.close()
        payload = self._complete_payload(drained, stop_data, stop_err)
        self._report_problems(emit, payload)
        emit("recording-complete", payload)
        return payload

    def _complete_payload(self, drained: bool, stop_data, stop_err) -> dict[str, Any]:
        up = self.uplink
        unacked = up.unacked()
        left = up.spool.remove_if_empty() if not unacked else sum(unacked.values())
        rejected = [{k: m.get(k) for k in ("channel_id", "seq", "error_code", "message")} for m in up.rejected]
        return {"sessionId": self.sid,
                "status": "complete" if drained and not stop_err and not rejected else "incomplete",
                "started_at": self.started_at, "stopped_at": self.stopped_at,
                "duration": self.stopped_at - self.started_at, "drain_s": round(time.time() - self.stopped_at, 3),
                "fragments": {c: pl.fragments for c, pl in self.pipelines.items()},
                "bytes": {c: pl.bytes for c, pl in self.pipelines.items()},
                "acked": dict(up.acked_last), "unacked": unacked, "rejected": rejected,
                "spool_dir": str(up.spool.dir) if left else None,
                "lost_channels": self.lost, "stop": stop_data, "stop_error": stop_err,
                "upload": dict(up.stats)}

    def _report_problems(self, emit: Callable[[str, dict], None], payload: dict) -> None:
        up, unacked, stop_err = self.uplink, payload["unacked"], payload["stop_error"]
        if unacked:
            emit("error", {"code": "UPLOAD_INCOMPLETE", "sessionId": self.sid,
                           "message": f"{sum(unacked.values())} fragments were not acknowledged by the server "
                                      f"(last error: {up.last_error}); they are kept in {up.spool.dir} and are "
                                      "resent when this session is started again or with "
                                      f"`python -m vdbnb.recorder --resend {up.spool.dir}`"})
        if stop_err:
            emit("error", {"code": stop_err["code"], "sessionId": self.sid,
                           "message": "stop (R3) failed: " + stop_err["message"]})

    def stats(self) -> dict[str, Any]:
        up = self.uplink
        return {"pipelines": {c: {"fragments": pl.fragments, "bytes": pl.bytes, "error": pl.error}
                              for c, pl in self.pipelines.items()},
                "upload": dict(up.stats), "unacked": up.unacked(), "acked": dict(up.acked_last)}
