"""No blocking SQLite on the server's event loop: inside ``async def`` in vdbnb/server, the store, sessions,
auth and ingest (all SQLite) are only handed to ``asyncio.to_thread``, never called directly."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKING = {"store", "sessions", "auth", "ingest"}   # objects whose methods query SQLite
IN_MEMORY = {"connections", "listeners", "hub"}                 # plain attributes on them that do not


def chain(node) -> list[str]:
    out = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        out.append(node.id)
    return out[::-1]


def blocking_calls(path: Path) -> list[str]:
    hits = []
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(fn, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names = chain(node.func)[:-1]   # the object the method is called on, e.g. ctx.store
                if BLOCKING & set(names) and not IN_MEMORY & set(names):
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {'.'.join(chain(node.func))}() in "
                                f"async {fn.name}")
    return hits


def test_async_server_code_does_not_call_sqlite_on_the_loop():
    hits = [h for p in sorted((ROOT / "vdbnb" / "server").rglob("*.py")) for h in blocking_calls(p)]
    assert not hits, ("blocking SQLite calls on the event loop: wrap them, e.g. "
                      "`await asyncio.to_thread(ctx.store.update, ...)`:\n" + "\n".join(hits))


def test_the_scan_finds_a_direct_call(tmp_path):
    probe = tmp_path / "m.py"
    probe.write_text("import asyncio\nasync def h(ctx):\n    ctx.store.update('t', 'id', 1)\n"
                     "    await asyncio.to_thread(ctx.store.update, 't', 'id', 1)\n"
                     "    ctx.ingest.connections.get('s')\n\nasync def w(self):\n    self.store.all('x')\n")
    global ROOT
    root, ROOT = ROOT, tmp_path
    try:
        hits = blocking_calls(probe)
    finally:
        ROOT = root
    assert [h.split()[0] for h in hits] == ["m.py:3", "m.py:8"], hits
