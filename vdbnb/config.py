"""vdbnb's settings: ONE typed object, read from the environment once per runtime and passed down.

``Settings.from_env()`` is the only place in ``vdbnb/`` that reads ``os.environ`` (a test scans the package
for any other ``environ``/``getenv``). Each runtime reads it at its entry point and hands it to what it builds:

- server: ``vdbnb serve`` (cli) -> ``serve(settings)`` -> ``create_app(settings)`` -> ``Context.settings``, which the
  routes, pipelines and webhooks read; ``vdbnb.ai.configure(settings)`` hands the AI engines (process-wide,
  loaded once) their threads, model dir and LLM. Used without a server (tests, benches), ``vdbnb.ai`` reads
  ``Settings.from_env()`` once on first use.
- recorder: ``vdbnb record`` (recorder/cli) -> ``Recorder(settings=...)`` -> sources, devices, uplink.
- notebook: ``connect()`` and ``CaptureClient()`` call ``Settings.from_env()`` when called (a notebook sets
  ``os.environ`` and then connects), and pass what they need on.

Pass-through variables are not settings. ``DISPLAY``, ``PULSE_SERVER``, ``PULSE_SOURCE``, ``XDG_RUNTIME_DIR``,
``LC_ALL`` and the like belong to X11/PulseAudio/PortAudio: vdbnb never interprets them, it lets child
processes inherit them. Spawning code builds a child's environment with :func:`child_env` (the inherited
environment plus explicit overrides, e.g. ``PULSE_SOURCE`` for an audio worker, ``LC_ALL=C`` for pactl), or
passes no ``env`` at all. A few are also read here as fields because vdbnb decides something from them:
``DISPLAY`` (``Settings.display``: no X display means no screen channels, said plainly; likewise
``WAYLAND_DISPLAY`` / ``XDG_SESSION_TYPE``: a Wayland session) and ``PULSE_SOURCE``
(``Settings.pulse_source``: which source an audio worker was handed, for its error messages). The one
in-process write is :func:`pulse_source`: PortAudio's pulse plugin reads ``PULSE_SOURCE`` from the process
environment when a stream opens, so the notebook's local preview sets it for that one call, under a lock.

The README's configuration table is generated from the fields (``python -m vdbnb.config``) and a test checks
that it matches.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
KEY_FILE = "api_key"
WEBHOOK_SECRET_FILE = "webhook_secret"
SERVER_FILE = "server.json"
MEDIA_KEY_FILE = "media_url_key"          # signs media URLs; random, independent of every other secret
FINGERPRINT_KEY_FILE = "fingerprint_key"  # keys the fingerprints of redacted secrets

_FALSE = ("0", "false", "off", "no")
_TRUE = ("1", "true", "on", "yes")


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("vdbnb", appauthor=False))


def _setting(env: str, default: Any, doc: str, runtime: str, *, also: tuple[str, ...] = (),
             factory=None, shown: str | None = None):
    """A field read from ``env`` (then the ``also`` names, in order); ``doc`` and ``runtime`` make the README's
    table; ``shown`` is the default as the table prints it when the value is computed."""
    meta = {"env": env, "also": also, "doc": doc, "runtime": runtime, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Every vdbnb setting. Build with :meth:`from_env` (environment + explicit overrides) or directly."""

    # ---- server
    data_dir: Path = _setting("VDBNB_DATA_DIR", None, "data dir: SQLite, media, API key (file mode 0600)",
                              "server, notebook", factory=_default_data_dir, shown="the user data dir")
    host: str = _setting("VDBNB_HOST", DEFAULT_HOST, "where `vdbnb serve` binds", "server")
    port: int = _setting("VDBNB_PORT", DEFAULT_PORT, "where `vdbnb serve` binds (0: any free port)", "server")
    api_key: str | None = _setting("VDBNB_API_KEY", None, "the API key: the server's on first start, the "
                                   "client's for `VDBNB_URL`", "server, notebook", shown="read from the data dir")
    ai_enabled: bool = _setting("VDBNB_AI", True, "run the AI pipelines (`0`: capture and storage only)",
                                "server")
    max_body_bytes: int = _setting("VDBNB_MAX_BODY_BYTES", 1024 * 1024, "largest JSON request body (413 "
                                   "above; fragments have their own 16 MiB limit)", "server")
    recorder_grace_s: float = _setting("VDBNB_RECORDER_GRACE_S", 8.0, "a recorder silent this long ends its "
                                       "session (one that returns within it resumes)", "server")
    webhook_max_backoff_s: float = _setting("VDBNB_WEBHOOK_MAX_BACKOFF_S", 5.0, "longest wait between "
                                            "webhook retries", "server")
    webhook_timeout_s: float = _setting("VDBNB_WEBHOOK_TIMEOUT_S", 5.0, "timeout of one webhook delivery",
                                        "server")
    pipeline_behind_s: float = _setting("VDBNB_PIPELINE_BEHIND_S", 15.0, "a pipeline this far behind live "
                                        "emits `pipeline.behind`", "server")
    # ---- scale-out (docs/scale-out.md)
    database_url: str | None = _setting("VDBNB_DATABASE_URL", None, "the store: `postgresql://user:pw@host:port/db`"
                                        " shared by api replicas and workers", "server",
                                        shown="SQLite in the data dir")
    media_url: str | None = _setting("VDBNB_MEDIA_URL", None, "the media: `s3://bucket/prefix?endpoint=…&region=…`"
                                     " (credentials: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`)", "server",
                                     shown="files in the data dir")
    role: str = _setting("VDBNB_ROLE", "all", "what `vdbnb serve` runs: `all` (API, AI pipelines, exports) or "
                         "`api` (the AI and exports run in `vdbnb worker`)", "server")
    scratch_max_mb: int = _setting("VDBNB_SCRATCH_MAX_MB", 2048, "local copies of S3 media one process keeps",
                                   "server")
    lease_s: float = _setting("VDBNB_LEASE_S", 10.0, "a worker that stops renewing its lease on a stream "
                              "for this long loses it to another worker", "server")
    # ---- AI engines (server pipelines)
    stt_model: str = _setting("VDBNB_STT_MODEL", "tiny.en", "live speech-to-text model (`tiny.en` or "
                              "`base.en`)", "server")
    accurate_pass: bool = _setting("VDBNB_ACCURATE_PASS", True, "after stop, transcribe again with Whisper "
                                   "base (`0`: off)", "server")
    stt_final_model: str | None = _setting("VDBNB_STT_FINAL_MODEL", None, "a bigger model for live finals "
                                           "only (`base.en`; interims stay on `VDBNB_STT_MODEL`)", "server",
                                           shown="`VDBNB_STT_MODEL`")
    stt_threads: int = _setting("VDBNB_STT_THREADS", 2, "CPU threads of speech-to-text", "server")
    embed_threads: int = _setting("VDBNB_EMBED_THREADS", 2, "onnxruntime threads of the embedder", "server")
    ocr_threads: int = _setting("VDBNB_OCR_THREADS", 2, "parallel OCR line recognisers", "server")
    ocr_int8: bool = _setting("VDBNB_OCR_INT8", True, "int8 OCR recogniser (`0`: the float model)", "server")
    model_dir: Path | None = _setting("VDBNB_MODEL_DIR", None, "where derived model files are kept", "server",
                                      shown="the user cache dir")
    llm_url: str | None = _setting("VDBNB_LLM_URL", None, "an OpenAI-compatible endpoint for prompt-driven "
                                   "indexes", "server", shown="offline default")
    llm_model: str | None = _setting("VDBNB_LLM_MODEL", None, "the model name at `VDBNB_LLM_URL`", "server",
                                     shown="`default`")
    llm_api_key: str | None = _setting("VDBNB_LLM_API_KEY", None, "the key for `VDBNB_LLM_URL`", "server",
                                       shown="(none)")
    llm_gguf: str | None = _setting("VDBNB_LLM_GGUF", None, "a local GGUF model run with xllamacpp", "server",
                                    shown="(none)")
    llm_chat_template: str | None = _setting("VDBNB_LLM_CHAT_TEMPLATE", None, "chat template for a GGUF that "
                                             "has none: a llama.cpp name (`gemma`, `chatml`…) or Jinja", "server",
                                             shown="the GGUF's own")
    llm_images: bool = _setting("VDBNB_LLM_IMAGES", True, "send screen frames (the secrets' lines blacked out) "
                                "with the text to an OpenAI-compatible endpoint", "server")
    # ---- security and retention (docs/security.md)
    redact_keep: str | None = _setting("VDBNB_REDACT_KEEP", None, "detector labels reported but left in the "
                                       "text, comma-separated (e.g. `email`)", "server", shown="(redact all)")
    media_url_ttl_s: float = _setting("VDBNB_MEDIA_URL_TTL_S", 3600.0, "lifetime of signed media URLs",
                                      "server")
    ws_ticket_ttl_s: float = _setting("VDBNB_WS_TICKET_TTL_S", 60.0, "lifetime of a websocket URL's "
                                      "single-use ticket", "server")
    webhook_retry_s: float = _setting("VDBNB_WEBHOOK_RETRY_S", 86400.0, "how long a webhook is retried "
                                      "before it becomes a dead letter", "server")
    retention_days: float | None = _setting("VDBNB_RETENTION_DAYS", None, "capture sessions older than this "
                                            "are deleted with everything derived from them", "server",
                                            shown="(keep)")
    # ---- notebook + recorder
    url: str | None = _setting("VDBNB_URL", None, "a running server to use instead of the embedded one",
                               "notebook, recorder", also=("VIDEO_DB_API",), shown="the embedded server")
    videodb_api_key: str | None = _setting("VIDEO_DB_API_KEY", None, "API key for VideoDB's cloud (when "
                                           "`VDBNB_API_KEY` is unset)", "notebook", shown="(none)")
    # ---- recorder
    client_token: str | None = _setting("VDBNB_CLIENT_TOKEN", None, "client token for `vdbnb record "
                                        "--resend`", "recorder", shown="(none)")
    audio_backend: str = _setting("VDBNB_AUDIO_BACKEND", "auto", "audio capture: `parec`, `sounddevice` or "
                                  "`auto` (parec when installed)", "recorder")
    spool_dir: Path | None = _setting("VDBNB_SPOOL_DIR", None, "where unacknowledged fragments are kept",
                                      "recorder", shown="the user cache dir")
    capture_xwayland: bool = _setting("VDBNB_CAPTURE_XWAYLAND", False, "on a Wayland session, capture the "
                                      "XWayland screen anyway (only X11 windows show; Wayland ones are black)",
                                      "recorder")
    # ---- the embedded server (`vdbnb.connect()` with no URL)
    idle_exit_s: float = _setting("VDBNB_IDLE_EXIT_S", 300.0, "an embedded server exits after this long with "
                                  "no client (it also exits with the last process that used it; `0`: no idle "
                                  "exit)", "notebook")
    # ---- MCP server (`vdbnb mcp`)
    mcp_port: int = _setting("VDBNB_MCP_PORT", 8766, "where `vdbnb mcp --http` listens (always on 127.0.0.1)",
                             "mcp")
    # ---- read, not owned (see the module docstring)
    display: str | None = _setting("DISPLAY", None, "the X display (no display: no screen channels)",
                                   "recorder, notebook", shown="(inherited)")
    wayland_display: str | None = _setting("WAYLAND_DISPLAY", None, "set in a Wayland session (screens are "
                                           "then not captured natively: browser capture instead)",
                                           "recorder, notebook", shown="(inherited)")
    session_type: str | None = _setting("XDG_SESSION_TYPE", None, "`wayland` or `x11`, as the desktop says",
                                        "recorder, notebook", shown="(inherited)")
    pulse_source: str | None = _setting("PULSE_SOURCE", None, "the PulseAudio source an audio worker "
                                        "records (set by the recorder)", "recorder", shown="(set per worker)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); ``overrides`` that are not None win (command-line
        options). An empty variable counts as unset; a value of the wrong type raises :class:`SettingsError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = _convert(f, overrides.pop(f.name), f"{f.name}=")
                continue
            overrides.pop(f.name, None)
            for name in (f.metadata["env"], *f.metadata["also"]):
                raw = env.get(name)
                if raw not in (None, ""):
                    values[f.name] = _convert(f, raw, f"{name}=")
                    break
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        return cls(**values)

    def __post_init__(self):
        for name in ("media_url_ttl_s", "ws_ticket_ttl_s", "webhook_retry_s", "retention_days"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                env = next(f.metadata["env"] for f in dataclasses.fields(self) if f.name == name)
                raise SettingsError(f"{env}={v!r} must be a positive number")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def runs_pipelines(self) -> bool:
        """This process runs the AI pipelines (roles ``all`` and ``worker``; an ``api`` replica does not)."""
        return self.ai_enabled and self.role in ("all", "worker")

    @property
    def redact_keep_labels(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in (self.redact_keep or "").split(",") if x.strip())

    @property
    def llm_endpoint(self) -> dict:
        """Which LLM the prompt-driven indexes use, and whether anything leaves this machine for it."""
        from urllib.parse import urlsplit

        if self.llm_url:
            host = (urlsplit(self.llm_url).hostname or "").lower()
            local = host in ("localhost", "::1") or host.startswith("127.")
            return {"engine": "openai-compatible", "url": self.llm_url, "model": self.llm_model,
                    "remote": not local, "sends": "redacted text" + (" and screen frames with the secrets' lines "
                                                                    "blacked out" if self.llm_images else "")}
        if self.llm_gguf:
            return {"engine": "llama.cpp", "path": self.llm_gguf, "remote": False,
                    "sends": "nothing leaves this machine"}
        return {"engine": "offline-extractive", "remote": False, "sends": "nothing leaves this machine"}

    @property
    def runs_exports(self) -> bool:
        """This process runs export jobs (roles ``all`` and ``worker``; an ``api`` replica queues them)."""
        return self.role in ("all", "worker")

    @property
    def spool_root(self) -> Path:
        """Where the recorder spools: ``spool_dir``, else the user cache dir."""
        if self.spool_dir is not None:
            return self.spool_dir
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("vdbnb", appauthor=False)) / "spool"

    @property
    def model_cache(self) -> Path:
        """Where derived model files live: ``model_dir``, else the user cache dir."""
        if self.model_dir is not None:
            return self.model_dir
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("vdbnb", appauthor=False)) / "models"


def _convert(f: dataclasses.Field, raw: Any, where: str) -> Any:
    kind = str(f.type).replace(" | None", "")
    if not isinstance(raw, str):
        return Path(raw).expanduser().resolve() if kind == "Path" and f.name == "data_dir" else raw
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in _FALSE:
                return False
            if low in _TRUE:
                return True
            raise ValueError("expected 1/0, true/false, on/off or yes/no")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            p = Path(raw).expanduser()
            return p.resolve() if f.name == "data_dir" else p
        return raw
    except ValueError as e:
        raise SettingsError(f"{where}{raw!r} is not a valid {kind} ({e}): fix or unset it "
                            f"({f.metadata['doc']})") from None


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data dir: ``override``, else ``VDBNB_DATA_DIR``, else the user data dir."""
    return Settings.from_env(data_dir=override).data_dir


def child_env(overrides: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for a child process: this process's (the pass-through variables ``DISPLAY``,
    ``PULSE_SERVER``, ``XDG_RUNTIME_DIR``, ``VDBNB_*`` … unchanged) plus ``overrides``, minus ``drop``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(overrides or {})
    return env


_PULSE_LOCK = threading.Lock()


@contextlib.contextmanager
def pulse_source(source: str | None) -> Iterator[None]:
    """Set ``PULSE_SOURCE`` in this process while the body opens a PortAudio stream (its pulse plugin reads the
    variable at open), then restore it. ``None`` unsets it (the default source)."""
    with _PULSE_LOCK:
        old = os.environ.get("PULSE_SOURCE")
        try:
            if source:
                os.environ["PULSE_SOURCE"] = source
            else:
                os.environ.pop("PULSE_SOURCE", None)
            yield
        finally:
            if old is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = old


def markdown_table() -> str:
    """The README's configuration table, generated from the fields."""
    rows = ["| variable | runtime | meaning | default |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        m = f.metadata
        names = ", ".join(f"`{n}`" for n in (m["env"], *m["also"]))
        if m["shown"] is not None:
            default = m["shown"]
        elif isinstance(f.default, bool):
            default = f"`{int(f.default)}`"
        else:
            default = f"`{f.default}`"
        rows.append(f"| {names} | {m['runtime']} | {m['doc']} | {default} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
