"""Kernel side of the recorder protocol: ``CaptureClient`` mirrors ``videodb.capture.CaptureClient`` (0.5.1)
and spawns ``python -m vdbnb.recorder`` instead of VideoDB's binary. ``SyncCaptureClient`` (or
``CaptureClient.sync(...)``) runs the same client on a background asyncio loop for notebooks."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sys
import threading
import uuid
import warnings
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

from vdbnb.capture.channels import AudioChannel, CaptureEvent, Channel, Channels, KernelChannel, VideoChannel
from vdbnb.config import DEFAULT_HOST, DEFAULT_PORT, Settings, child_env
from vdbnb.errors import CaptureError

logger = logging.getLogger(__name__)
PREFIX = "videodb_recorder|"


def default_base_url() -> str:
    """The server to use when none is given: ``VDBNB_URL`` (or ``VIDEO_DB_API``), else the embedded server that
    ``vdbnb.connect()`` started for the data dir (its server.json), else the default port."""
    s = Settings.from_env()
    if s.url:
        return s.url
    from vdbnb.api.embedded import running_server
    info = running_server(s.data_dir)
    return info["url"] if info else f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


class CaptureClient:
    """Async client of the vdbnb recorder (same API as ``videodb.capture.CaptureClient``)."""

    VALID_PERMISSIONS = {"microphone", "screen_capture"}

    def __init__(self, client_token: str, base_url: Optional[str] = None, recorder_cmd: list[str] | None = None,
                 env: dict | None = None, command_timeout: float = 60.0):
        self.client_token = client_token
        self.base_url = base_url or default_base_url()
        self.recorder_cmd = recorder_cmd or [sys.executable, "-m", "vdbnb.recorder"]
        self.env = env
        self.command_timeout = command_timeout
        self._session_id: Optional[str] = None
        self._proc: asyncio.subprocess.Process | None = None
        self._futures: Dict[str, asyncio.Future] = {}
        self._event_queue: asyncio.Queue | None = None
        self._listeners: list[Callable[[CaptureEvent], None]] = []
        self._tasks: list[asyncio.Task] = []
        self.stderr_tail: list[str] = []
        self.kernel_recorder = None   # records this kernel's cells when a KernelChannel is started

    def __repr__(self):
        return f"CaptureClient(base_url={self.base_url})"

    @classmethod
    def sync(cls, client_token: str, base_url: Optional[str] = None, **kw) -> "SyncCaptureClient":
        return SyncCaptureClient(client_token, base_url, **kw)

    # ---------------------------------------------------------------- process + IPC
    async def _ensure_process(self):
        if self._proc is not None and self._proc.returncode is None:
            return
        if self._event_queue is None:
            self._event_queue = asyncio.Queue()
        self._proc = await asyncio.create_subprocess_exec(
            *self.recorder_cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=child_env(self.env), limit=16 * 1024 * 1024)
        self._tasks = [asyncio.create_task(self._read_stdout_loop()), asyncio.create_task(self._read_stderr_loop())]
        await self._send_command("init", {"apiUrl": self.base_url})

    def add_listener(self, fn: Callable[[CaptureEvent], None]):
        """Call ``fn(event)`` for every event (from the loop; keep it quick)."""
        self._listeners.append(fn)

    async def _send_command(self, command: str, params: Optional[Dict[str, Any]] = None,
                            timeout: float | None = None) -> Dict[str, Any]:
        await self._ensure_process()
        cid = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self._futures[cid] = fut
        msg = PREFIX + json.dumps({"command": command, "commandId": cid, "params": params or {}}) + "\n"
        try:
            self._proc.stdin.write(msg.encode())
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            self._futures.pop(cid, None)
            raise CaptureError(f"the recorder process is gone ({e}); stderr: {' | '.join(self.stderr_tail[-5:])}")
        try:
            return await asyncio.wait_for(fut, timeout or self.command_timeout)
        except asyncio.TimeoutError:
            raise CaptureError(f"the recorder did not answer {command!r} within "
                               f"{timeout or self.command_timeout:.0f}s") from None
        finally:
            self._futures.pop(cid, None)

    async def _read_stdout_loop(self):
        proc = self._proc
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            s = line.decode("utf-8", "replace").strip()
            if not s.startswith(PREFIX):
                continue
            try:
                data = json.loads(s[len(PREFIX):])
            except ValueError:
                continue
            if data.get("type") == "response":
                fut = self._futures.get(data.get("commandId"))
                if fut and not fut.done():
                    if data.get("status") == "success":
                        fut.set_result(data.get("result") or {})
                    else:
                        res = data.get("result") or {}
                        err = CaptureError(res.get("message", str(res)) if isinstance(res, dict) else str(res))
                        err.code = res.get("code") if isinstance(res, dict) else None
                        err.result = res
                        fut.set_exception(err)
            elif data.get("type") == "event":
                ev = CaptureEvent(data)
                for fn in list(self._listeners):
                    try:
                        fn(ev)
                    except Exception:  # noqa: BLE001
                        logger.exception("capture event listener failed")
                if ev.event not in ("thumbnail", "audio-level") or not self._listeners:
                    await self._event_queue.put(ev)
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(CaptureError("the recorder process exited; stderr: "
                                               + " | ".join(self.stderr_tail[-5:])))

    async def _read_stderr_loop(self):
        proc = self._proc
        while True:
            line = await proc.stderr.readline()
            if not line:
                break
            s = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail = (self.stderr_tail + [s])[-50:]
            logger.debug("[recorder] %s", s)

    # ---------------------------------------------------------------- API (as videodb.capture)
    async def request_permission(self, kind: str) -> bool:
        if kind not in self.VALID_PERMISSIONS:
            raise ValueError(f"Invalid permission type: '{kind}'. Valid types: "
                             f"{', '.join(sorted(self.VALID_PERMISSIONS))}")
        r = await self._send_command("requestPermission", {"permission": kind.replace("_", "-")})
        return r.get("requested") is True or r.get("status") == "granted"

    async def get_permission_status(self) -> dict:
        return await self._send_command("getPermissionStatus")

    async def list_channels(self) -> Channels:
        r = await self._send_command("getChannels")
        mics, displays, sysa, cams = [], [], [], []
        for ch in r.get("channels", []):
            cid = ch.get("channel_id") or ch.get("id")
            if not cid:
                continue
            kw = {"is_default": bool(ch.get("is_default")), "info": ch}
            name = ch.get("name", "")
            if cid.startswith("mic:"):
                mics.append(AudioChannel(cid, name, self, **kw))
            elif cid.startswith(("display:", "screen:")):
                displays.append(VideoChannel(cid, name, self, **kw))
            elif cid.startswith("system_audio:"):
                sysa.append(AudioChannel(cid, name, self, **kw))
            elif cid.startswith("camera:"):
                cams.append(VideoChannel(cid, name, self, **kw))
            elif ch.get("type") == "audio":
                mics.append(AudioChannel(cid, name, self, **kw))
            elif ch.get("type") == "video":
                displays.append(VideoChannel(cid, name, self, **kw))
        self._problems = r.get("problems") or []
        from vdbnb.capture.kernel_taps import current_shell
        kernels = [KernelChannel(client=self, is_default=True)] if current_shell() is not None else []
        return Channels(mics, displays, sysa, cams, kernels, problems=self._problems)

    async def start_session(self, capture_session_id: str, channels: List[Channel],
                            primary_video_channel_id: Optional[str] = None, **options) -> dict:
        """Start recording. vdbnb extras (keyword options): ``video={fps, crf, scale, max_width}``,
        ``audio={bitrate, channels}``, ``privacy={exclude_windows: [regex], exclude_rects: [{x,y,w,h}]}``,
        ``spoolDir``, ``callbackUrl``, ``ws_connection_id``."""
        if not channels:
            raise ValueError("At least one channel must be specified for capture.")
        if primary_video_channel_id is not None:
            warnings.warn("primary_video_channel_id is deprecated. Set channel.is_primary = True on the desired "
                          "video channel instead.", DeprecationWarning, stacklevel=2)
            for ch in channels:
                if getattr(ch, "id", None) == primary_video_channel_id:
                    ch.is_primary = True
                    break
        chans = [c.to_dict() if hasattr(c, "to_dict") else ({"channel_id": c} if isinstance(c, str) else c)
                 for c in channels]
        kernel = next((c for c in channels if isinstance(c, KernelChannel)
                       or (isinstance(c, dict) and c.get("type") == "kernel")
                       or (isinstance(c, str) and c.startswith("kernel:"))), None)
        rec = None
        if kernel is not None:
            from vdbnb.capture.kernel import KernelRecorder
            cid = getattr(kernel, "id", None) or (kernel.get("channel_id") if isinstance(kernel, dict) else kernel)
            for d in chans:
                if d.get("channel_id") == cid:
                    d["type"] = "kernel"
            rec = KernelRecorder(self.base_url, self.client_token, capture_session_id, channel_id=cid,
                                 private=bool(getattr(kernel, "private", False)))  # no IPython here: fails now
        params = {"sessionId": capture_session_id, "uploadToken": self.client_token, "channels": chans, **options}
        res = await self._send_command("startRecording", params)
        self._session_id = capture_session_id
        self._recording = True
        if rec is not None:
            self.kernel_recorder = rec.start()   # after R1: the server knows the channel
        return res

    async def stop_session(self, drain_timeout: float = 15.0) -> dict:
        if not self._session_id:
            raise RuntimeError("No active capture session to stop.")
        kernel = None
        if self.kernel_recorder is not None:   # its last cells reach the server before the stop (R3)
            kernel = await asyncio.to_thread(self.kernel_recorder.stop, drain_timeout)
        res = await self._send_command("stopRecording", {"sessionId": self._session_id,
                                                         "drainTimeout": drain_timeout},
                                       timeout=drain_timeout + 30)
        self._recording = False
        if kernel is not None and isinstance(res, dict):
            res["kernel"] = kernel
        return res

    async def pause_tracks(self, tracks: list[str]) -> dict:
        return await self._send_command("pauseTracks", {"tracks": list(tracks)})

    async def resume_tracks(self, tracks: list[str]) -> dict:
        return await self._send_command("resumeTracks", {"tracks": list(tracks)})

    async def start_preview(self, channels: list | None = None, **opts) -> dict:
        ids = [c.id if isinstance(c, Channel) else c for c in channels] if channels else None
        return await self._send_command("startPreview", {"channels": ids, **opts})

    async def stop_preview(self) -> dict:
        return await self._send_command("stopPreview")

    async def ping(self) -> dict:
        return await self._send_command("ping")

    async def stats(self) -> dict:
        return await self._send_command("stats")

    async def events(self) -> AsyncIterator[CaptureEvent]:
        """Events from the recorder (``ev.event``/``ev.payload`` or ``ev["event"]``); ends when it exits.
        Thumbnails and levels are only queued here when no listener (``add_listener``/``on_event``) is set."""
        if self._event_queue is None:
            self._event_queue = asyncio.Queue()
        while True:
            try:
                yield await asyncio.wait_for(self._event_queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if self._proc is None or self._proc.returncode is not None:
                    break

    async def shutdown(self, timeout: float = 20.0):
        if self.kernel_recorder is not None:
            rec, self.kernel_recorder = self.kernel_recorder, None
            await asyncio.to_thread(rec.stop, 5.0)   # a last try for cells still unacknowledged
            await asyncio.to_thread(rec.close)
        if self._proc is None:
            return
        try:
            if self._proc.returncode is None:
                await self._send_command("shutdown", timeout=timeout)
        except Exception:  # noqa: BLE001
            pass
        try:
            self._proc.stdin.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except asyncio.TimeoutError:
            self._proc.terminate()
            await self._proc.wait()
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, 2)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                t.cancel()
        self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None


class SyncCaptureClient:
    """Blocking facade for notebooks: the async client runs on a private event loop thread.

    ``on_event(fn, events=None)`` registers a callback (called on the loop thread) for every event or only
    the named ones (e.g. ``["thumbnail", "audio-level"]``)."""

    def __init__(self, client_token: str, base_url: Optional[str] = None, **kw):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vdbnb-capture", daemon=True)
        self._thread.start()
        self.client = CaptureClient(client_token, base_url, **kw)
        self._callbacks: list[tuple[Callable, set | None]] = []
        self.client.add_listener(self._dispatch)
        self.events: list[CaptureEvent] = []   # every non-preview event, for inspection
        self.max_events = 10000

    def _dispatch(self, ev: CaptureEvent):
        if ev.event not in ("thumbnail", "audio-level"):
            self.events.append(ev)
            del self.events[:-self.max_events]
        for fn, names in list(self._callbacks):
            if names is None or ev.event in names:
                try:
                    fn(ev)
                except Exception:  # noqa: BLE001
                    logger.exception("on_event callback failed")

    def on_event(self, fn: Callable[[CaptureEvent], None], events: list[str] | None = None):
        self._callbacks.append((fn, set(events) if events else None))
        return fn

    def _run(self, coro, timeout: float | None = None):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise CaptureError("timed out waiting for the recorder") from None

    def request_permission(self, kind: str) -> bool:
        return self._run(self.client.request_permission(kind))

    def list_channels(self) -> Channels:
        chans = self._run(self.client.list_channels())
        for c in chans.all() + list(chans.cameras):
            c._client = self  # pause()/resume() on channels work synchronously
        return chans

    async def _send_command(self, command, params=None):  # used by Channel.pause/resume
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            self.client._send_command(command, params), self._loop))

    def start_session(self, capture_session_id: str, channels, primary_video_channel_id=None, **options):
        return self._run(self.client.start_session(capture_session_id, channels, primary_video_channel_id,
                                                   **options))

    def stop_session(self, drain_timeout: float = 15.0):
        return self._run(self.client.stop_session(drain_timeout))

    def pause(self, tracks):
        return self._run(self.client.pause_tracks(tracks if isinstance(tracks, list) else [tracks]))

    def resume(self, tracks):
        return self._run(self.client.resume_tracks(tracks if isinstance(tracks, list) else [tracks]))

    def start_preview(self, channels=None, **opts):
        return self._run(self.client.start_preview(channels, **opts))

    def stop_preview(self):
        return self._run(self.client.stop_preview())

    def ping(self):
        return self._run(self.client.ping())

    def stats(self):
        return self._run(self.client.stats())

    def wait_for(self, event: str, timeout: float = 30.0, predicate=None) -> CaptureEvent:
        """Block until an event named ``event`` arrives (seen since this client started)."""
        import time

        t_end = time.time() + timeout
        seen = 0
        while time.time() < t_end:
            evs = self.events[seen:]
            seen += len(evs)
            for ev in evs:
                if ev.event == event and (predicate is None or predicate(ev)):
                    return ev
            time.sleep(0.05)
        raise CaptureError(f"no {event!r} event within {timeout}s")

    def shutdown(self):
        try:
            self._run(self.client.shutdown(), timeout=40)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    @property
    def pid(self):
        return self.client.pid
