"""Every tool call, logged on the vdbnb server as an ``agent`` event (through its one event bus): who asked
(transport, client, credential id), what (tool and arguments, secrets redacted by the server), when, and how
it ended (ok / refused / error)."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import anyio

from ..errors import AuthenticationError, VideodbError
from .backend import Backend

log = logging.getLogger("vdbnb.mcp")


class Refused(Exception):
    """A call the server's settings do not allow (e.g. start_capture without --allow-control)."""


def caller_of(ctx, transport: str) -> dict:
    """Who is calling: the transport, the client's name and version, and on HTTP the credential's public id."""
    who: dict[str, Any] = {"transport": transport}
    try:
        info = ctx.request_context.session.client_params.client_info
        who["client"] = f"{info.name} {info.version}".strip()
    except AttributeError:
        pass
    from mcp.server.auth.middleware.auth_context import get_access_token
    tok = get_access_token()
    if tok is not None:
        who["credential"] = tok.client_id
    return who


class Audit:
    def __init__(self, backend: Backend, transport: str):
        self.backend = backend
        self.transport = transport

    async def run(self, ctx, tool: str, arguments: dict, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (blocking) in a thread, log the call, and turn failures into clear tool errors.

        ``fn`` returns ``(result, n_results, session_id)``."""
        from mcp.server.mcpserver.exceptions import ToolError
        asked = time.time()
        outcome, detail, n, sid = "ok", None, None, None
        try:
            result, n, sid = await anyio.to_thread.run_sync(fn)
            return result
        except Refused as e:
            outcome, detail = "refused", str(e)
            raise ToolError(str(e)) from None
        except AuthenticationError as e:
            outcome, detail = "error", str(e)
            raise ToolError(f"the vdbnb server refused this server's credential: {e}. Check VDBNB_API_KEY "
                            "(or the key file in the data dir).") from None
        except (VideodbError, ValueError) as e:
            outcome, detail = "error", str(e)
            raise ToolError(str(e)) from None
        finally:
            caller = caller_of(ctx, self.transport)
            args = {k: v for k, v in arguments.items() if v is not None}
            try:
                await anyio.to_thread.run_sync(lambda: self.backend.log_tool_call(
                    tool=tool, arguments=args, caller=caller, outcome=outcome, detail=detail, results=n,
                    duration_ms=round((time.time() - asked) * 1000, 1), session_id=sid, asked_at=asked))
            except Exception as e:  # the answer still goes out; the log line says why it is not on the server
                log.error("could not log the %s call on the vdbnb server: %s", tool, e)
