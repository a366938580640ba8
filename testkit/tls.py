"""One TLS context for the module-level httpx calls of the tests and benches (``httpx.get`` / ``post`` / …).

Each module-level call builds a new client, and with it a new SSL context that loads every CA certificate of
the machine: 176 ms a call measured on this 2-core box at load ~6 (cProfile: ``load_verify_locations``), for
requests that go to 127.0.0.1 over plain HTTP. The suite makes thousands of them (polling loops included).
:func:`share_tls_context` makes those calls default to ``verify=`` one context made once, as httpx itself
would make it (``httpx.create_ssl_context()``: the same CA certificates, so an https URL is verified the same).
A call that passes ``verify`` keeps it; ``httpx.Client`` is untouched (a client builds its context once).
"""
from __future__ import annotations

import functools

import httpx

_FUNCS = ("request", "stream", "get", "options", "head", "post", "put", "patch", "delete")
_shared = False


def share_tls_context() -> None:
    """Make httpx's module-level functions share one TLS context (idempotent)."""
    global _shared
    if _shared:
        return
    ctx = httpx.create_ssl_context()

    def shared(fn):
        @functools.wraps(fn)
        def call(*args, **kw):
            kw.setdefault("verify", ctx)
            return fn(*args, **kw)
        return call

    for name in _FUNCS:
        setattr(httpx, name, shared(getattr(httpx, name)))
    _shared = True
