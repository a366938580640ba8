"""The `vdbnb` command: serve, stop, info, sessions, record, search, mcp."""
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
    if settings.role not in ("all", "api"):
        print(f"--role {settings.role}: use all (API, AI pipelines and exports in one process) or api (the AI "
              "and exports run in `vdbnb worker`)", file=sys.stderr)
        return 2
    serve(settings, a.log_level, exit_with_owners=a.exit_with_owners, idle_exit_s=a.idle_exit or None)
    return 0


def _cmd_stop(a) -> int:
    from .api.embedded import stop_server
    d = a.settings.data_dir
    pid = stop_server(d)
    print(f"stopped the vdbnb server of {d} (pid {pid})" if pid else f"no vdbnb server is running for {d}")
    return 0


def _cmd_worker(a) -> int:
    from .server.worker import run_worker
    settings = a.settings.replace(role="worker")
    if not settings.database_url:
        print("vdbnb worker shares a PostgreSQL store with `vdbnb serve --role api` replicas: set "
              "VDBNB_DATABASE_URL (or --database-url postgresql://…); with the embedded SQLite store "
              "`vdbnb serve` runs the AI itself", file=sys.stderr)
        return 2
    run_worker(settings, a.worker_host, a.worker_port, a.log_level)
    return 0


def _backends(st) -> dict:
    """The store and media these settings use, and (on a shared store) the processes sharing it."""
    out = {"store": {"kind": "sqlite", "location": str(st.data_dir / "vdbnb.sqlite3")},
           "media": {"kind": "files", "location": str(st.data_dir)}, "processes": None}
    if st.database_url:
        from .server.context import redact_url
        out["store"] = {"kind": st.database_url.split(":", 1)[0], "location": redact_url(st.database_url)}
    if st.media_url:
        out["media"] = {"kind": st.media_url.split(":", 1)[0], "location": st.media_url.split("?", 1)[0]}
    if st.database_url and st.database_url.startswith("postgres"):
        try:
            from .server.store_pg import PostgresStore
            store = PostgresStore(st.database_url, max_size=1)
            try:
                import time
                rows = store.all("SELECT id, role, host, pid, url, heartbeat_at FROM processes ORDER BY role, id")
                out["processes"] = [{**r, "heartbeat_age_s": round(time.time() - (r["heartbeat_at"] or 0), 1)}
                                    for r in rows]
                row = store.one("SELECT value FROM server_secrets WHERE name=?", (WEBHOOK_SECRET_FILE,))
                out["webhook_secret"] = row["value"] if row else None
            finally:
                store.close()
        except Exception as e:  # noqa: BLE001 - info must still print the rest
            out["error"] = f"cannot read the database: {e}"
    return out


def _shared(b: dict) -> dict:
    out = {"backends": {k: b[k] for k in ("store", "media", "processes") if k in b}}
    if b.get("webhook_secret"):  # a shared store keeps it (every replica agrees): shown with --show-secrets
        out["_db_webhook_secret"] = b["webhook_secret"]
    if "error" in b:
        out["backends"]["error"] = b["error"]
    return out


def _info(a) -> dict:
    from .ai.engines import status as engine_status
    d = a.settings.data_dir
    key, secret = d / KEY_FILE, d / WEBHOOK_SECRET_FILE
    srv = {}
    if (d / SERVER_FILE).exists():
        try:
            srv = json.loads((d / SERVER_FILE).read_text())
        except ValueError:
            srv = {}
    import platform
    info = {
        "version": __version__, "python": platform.python_version(), "data_dir": str(d),
        "api_key_file": str(key) if key.exists() else None,
        "webhook_secret_file": str(secret) if secret.exists() else None,
        "server": srv or None, "engines": engine_status(),
        "llm": a.settings.llm_endpoint,
        "webhooks": _webhook_counts(d),
    } | _shared(_backends(a.settings))
    if getattr(a, "show_secrets", False):
        info["api_key"] = key.read_text().strip() if key.exists() else None
        info["webhook_secret"] = info.pop("_db_webhook_secret", None) or \
            (secret.read_text().strip() if secret.exists() else None)
    info.pop("_db_webhook_secret", None)
    return info


def _webhook_counts(d) -> dict | None:
    """Undelivered and dead-letter webhooks, read from the database (the server need not run)."""
    import sqlite3
    path = d / "vdbnb.sqlite3"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            pending, dead = db.execute("SELECT SUM(delivered_at IS NULL AND dead_at IS NULL), "
                                       "SUM(dead_at IS NOT NULL) FROM webhook_outbox").fetchone()
        finally:
            db.close()
    except sqlite3.Error:  # an older database (no dead letters yet) or one being migrated
        return None
    return {"pending": pending or 0, "dead_letters": dead or 0}


def _cmd_info(a) -> int:
    info = _info(a)
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    later = "(created on first `vdbnb serve` or vdbnb.connect())"
    print(f"vdbnb {info['version']} (Python {info['python']})")
    print(f"data dir            {info['data_dir']}")
    print(f"API key file        {info['api_key_file'] or later}")
    print(f"webhook secret file {info['webhook_secret_file'] or later}")
    if "api_key" in info:
        print(f"API key             {info['api_key']}")
        print(f"webhook secret      {info['webhook_secret']}")
    else:
        print("                    (the secrets themselves: vdbnb info --show-secrets)")
    srv = info["server"]
    print(f"server              {srv['url'] + ' (pid ' + str(srv['pid']) + ')' if srv else 'not running'}")
    for e in info["engines"].values():
        state = "installed" if e["installed"] else f"NOT INSTALLED (missing {', '.join(e['missing'])}): {e['install']}"
        print(f"{e['name']:<48}{state}")
        print(f"{'':<48}for {e['used_for']}")
    llm = info["llm"]
    print(f"LLM                 {llm['engine']} {llm.get('url') or llm.get('path') or ''}".rstrip())
    print(f"                    {'REMOTE: ' if llm['remote'] else ''}{llm['sends']}")
    b = info["backends"]
    print(f"store               {b['store']['kind']}: {b['store']['location']}")
    print(f"media               {b['media']['kind']}: {b['media']['location']}")
    if b.get("error"):
        print(f"                    {b['error']}")
    for p in b.get("processes") or []:
        print(f"  {p['role']:<7} {p['id']}  pid {p['pid']} on {p['host']}  heartbeat {p['heartbeat_age_s']}s ago")
    wh = info["webhooks"]
    if wh is not None:
        print(f"webhooks            {wh['pending']} pending, {wh['dead_letters']} dead letters"
              + ("  (list/replay: `vdbnb webhooks`, `vdbnb webhooks --replay`)" if wh["dead_letters"] else ""))
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


def _cmd_delete(a) -> int:
    """Delete capture sessions (stopped ones) with everything derived from them, through the server."""
    if not a.yes and sys.stdin.isatty():
        if input(f"delete {len(a.session_ids)} capture session(s) and everything derived from them? [y/N] ").strip() \
                .lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    conn = _connect(a)
    failed = 0
    for sid in a.session_ids:
        try:
            d = conn.delete_capture_session(sid)
        except Exception as e:  # noqa: BLE001 - say which one and go on
            print(f"{sid}: not deleted: {getattr(e, 'message', e)}", file=sys.stderr)
            failed += 1
            continue
        print(f"{sid}: deleted " + ", ".join(f"{v} {k}" for k, v in d["deleted"].items() if v))
    return 1 if failed else 0


def _cmd_webhooks(a) -> int:
    """Dead-letter webhooks: list them, or queue them again (--replay)."""
    conn = _connect(a)
    if a.replay:
        n = conn.post("webhooks/dead-letters/replay", {})["replayed"]
        print(f"{n} dead-letter webhook(s) queued again")
        return 0
    rows = conn.get("webhooks/dead-letters")["dead_letters"]
    if a.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no dead-letter webhooks")
    for r in rows:
        print(f"{r['msg_id']}  {r['session_id'] or '-':<24} {r['url']}  {r['attempts']} attempts: {r['last_error']}")
    return 0


def _cmd_rotate_media_key(a) -> int:
    """Write a new media URL key (the data dir's file, or the shared store's row): running servers read it on
    their next signature check."""
    from .config import MEDIA_KEY_FILE
    from .server.media_urls import MediaSigner
    if a.settings.database_url:
        from .server.store import open_store
        store = open_store(a.settings.database_url, a.settings.data_dir)
        try:
            MediaSigner(store=store, name=MEDIA_KEY_FILE).rotate()
        finally:
            store.close()
        print("new media URL key in the shared store: every media URL signed before is refused from now on")
        return 0
    path = a.settings.data_dir / MEDIA_KEY_FILE
    if not path.parent.exists():
        print(f"no data dir at {path.parent}: nothing to rotate", file=sys.stderr)
        return 2
    MediaSigner(path).rotate()
    print(f"new media URL key in {path}: every media URL signed before is refused from now on")
    return 0


def _scale_args(p) -> None:
    p.add_argument("--database-url", default=None, help="the store: postgresql://user:pw@host:port/db "
                   "(default: $VDBNB_DATABASE_URL, else SQLite in the data dir)")
    p.add_argument("--media-url", default=None, help="the media: s3://bucket/prefix?endpoint=http://host:port&"
                   "region=… with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (default: $VDBNB_MEDIA_URL, else files "
                   "in the data dir)")


class Fmt(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default (options whose default comes from the environment say so in their
    help text instead of printing None)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vdbnb", description="Real-time desktop capture for AI agents.")
    p.add_argument("--version", action="version", version=f"vdbnb {__version__}")
    p.add_argument("--data-dir", default=None, help="data dir (default: $VDBNB_DATA_DIR or the user data dir)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the VideoDB-compatible server", formatter_class=Fmt,
                       description="Run the VideoDB-compatible server (OpenAPI at /docs). It writes its address "
                       "and pid to <data dir>/server.json.")
    s.add_argument("--host", default=None, help="address to bind (default: $VDBNB_HOST, else 127.0.0.1); "
                   "anything but loopback needs --allow-remote")
    s.add_argument("--port", type=int, default=None, help="port to bind (default: $VDBNB_PORT, else 8765); 0 "
                   "picks a free one (see server.json)")
    s.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS,
                   help="where the database, media, API key and webhook secret live (default: $VDBNB_DATA_DIR, "
                        "else the user data dir)")
    s.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address (put TLS "
                   "in front)")
    s.add_argument("--no-ai", action="store_true", help="do not run the AI pipelines (transcripts, indexes, "
                   "alerts and search answer 400)")
    s.add_argument("--log-level", default="info", choices=["trace", "debug", "info", "warning", "error",
                                                          "critical"], help="log verbosity")
    s.add_argument("--exit-with-owners", action="store_true", help="exit once every process listed in "
                   "<data dir>/server.owners has exited (what vdbnb.connect() starts its embedded server with)")
    s.add_argument("--idle-exit", type=float, default=0.0, metavar="SECONDS", help="exit after this many "
                   "seconds with no request, websocket, recorder or live session (0: never; vdbnb.connect()'s "
                   "embedded server uses $VDBNB_IDLE_EXIT_S, default 300)")
    s.add_argument("--role", default=None, help="all: API + AI pipelines + exports in this process; api: the API "
                   "only, the AI and exports run in `vdbnb worker` processes sharing the same --database-url (default: "
                   "$VDBNB_ROLE, else all)")
    _scale_args(s)
    s.set_defaults(fn=_cmd_serve)
    w = sub.add_parser("worker", help="run the AI pipelines and exports beside `vdbnb serve --role api` replicas "
                       "(shared PostgreSQL store and S3 media; docs/scale-out.md)", formatter_class=Fmt)
    w.add_argument("--host", dest="worker_host", default="127.0.0.1", help="where /health is served")
    w.add_argument("--port", dest="worker_port", type=int, default=0,
                   help="port of /health (0: a free one, logged)")
    w.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="scratch and key files")
    _scale_args(w)
    w.add_argument("--log-level", default="info", help="log verbosity")
    w.set_defaults(fn=_cmd_worker)
    i = sub.add_parser("info", help="paths, versions, engines, where the API key and webhook secret are",
                       formatter_class=Fmt)
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument("--show-secrets", action="store_true", help="also print the API key and the webhook secret")
    i.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="data dir to describe")
    _scale_args(i)
    i.set_defaults(fn=_cmd_info)
    st = sub.add_parser("stop", help="stop the server of the data dir (the embedded one vdbnb.connect() started)",
                        formatter_class=Fmt)
    st.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="data dir of the server")
    st.set_defaults(fn=_cmd_stop)
    ss = sub.add_parser("sessions", help="list capture sessions")
    ss.add_argument("--status", default=None)
    ss.add_argument("--url", default=None)
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(fn=_cmd_sessions)
    se = sub.add_parser("search", help="search everything captured")
    se.add_argument("query", nargs="+")
    se.add_argument("--url", default=None)
    se.set_defaults(fn=_cmd_search)
    de = sub.add_parser("delete", help="delete capture sessions with everything derived from them")
    de.add_argument("session_ids", nargs="+", metavar="SESSION_ID")
    de.add_argument("--yes", action="store_true", help="do not ask")
    de.add_argument("--url", default=None)
    de.set_defaults(fn=_cmd_delete)
    wh = sub.add_parser("webhooks", help="dead-letter webhooks (not delivered within VDBNB_WEBHOOK_RETRY_S)")
    wh.add_argument("--replay", action="store_true", help="queue every dead letter again")
    wh.add_argument("--json", action="store_true")
    wh.add_argument("--url", default=None)
    wh.set_defaults(fn=_cmd_webhooks)
    rk = sub.add_parser("rotate-media-key", help="new media URL signing key (old stream/player URLs stop working)")
    rk.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    _scale_args(rk)
    rk.set_defaults(fn=_cmd_rotate_media_key)
    sub.add_parser("record", help="run the recorder process (driven by CaptureClient over stdin/stdout); "
                   "`vdbnb record --help` for its options")
    sub.add_parser("mcp", help="an MCP server for AI agents over what was captured (stdio; --http); "
                   "`vdbnb mcp --help` for its options, `vdbnb mcp token` for a read-only agent token")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
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
                                       port=getattr(a, "port", None), role=getattr(a, "role", None),
                                       database_url=getattr(a, "database_url", None),
                                       media_url=getattr(a, "media_url", None))
    except SettingsError as e:
        print(f"vdbnb: {e}", file=sys.stderr)
        return 2
    return a.fn(a)
