"""Settings read from the environment, in one place.

| variable | meaning | default |
|---|---|---|
| VDBNB_DATA_DIR | where the embedded server keeps its database, media and key | platformdirs user data dir |
| VDBNB_URL | a running server to use instead of the embedded one | (embedded) |
| VDBNB_API_KEY | API key to use / to create on first start | read from the data dir |
| VDBNB_HOST / VDBNB_PORT | where `vdbnb serve` binds | 127.0.0.1 / 8765 |
| VDBNB_LLM_URL / VDBNB_LLM_MODEL / VDBNB_LLM_API_KEY | an OpenAI-compatible endpoint for prompt-driven indexes | (offline default) |
| VDBNB_LLM_GGUF | a local GGUF file run with xllamacpp | (none) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
KEY_FILE = "api_key"
WEBHOOK_SECRET_FILE = "webhook_secret"
SERVER_FILE = "server.json"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("VDBNB_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("vdbnb", appauthor=False))


@dataclass
class ServerSettings:
    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = 8 * 1024 * 1024
    webhook_max_backoff_s: float = 5.0
    webhook_timeout_s: float = 5.0
    ai_enabled: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, data_dir_override=None, host=None, port=None) -> "ServerSettings":
        return cls(
            data_dir=data_dir(data_dir_override),
            host=host or os.environ.get("VDBNB_HOST", DEFAULT_HOST),
            port=int(port if port is not None else os.environ.get("VDBNB_PORT", DEFAULT_PORT)),
            ai_enabled=os.environ.get("VDBNB_AI", "1") not in ("0", "false", "off"),
        )
