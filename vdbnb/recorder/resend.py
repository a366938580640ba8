"""``vdbnb record --resend SPOOL_DIR``: send the fragments a stopped recorder kept (the server was down)."""
from __future__ import annotations

from pathlib import Path

from vdbnb.recorder.uplink import Uplink


async def resend_spool(spool_dir: Path, api_url: str, token: str, timeout: float = 60) -> dict:
    """Resend what ``spool_dir`` holds (its name is the session id); wait up to ``timeout`` for the acks."""
    sid = Path(spool_dir).name
    up = Uplink(api_url, token, sid, Path(spool_dir).parent)
    up.resume_spooled()
    up.run()
    ok = await up.drain(timeout)
    await up.close()
    left = up.spool.remove_if_empty()
    return {"sessionId": sid, "complete": ok, "left": left, "acked": up.acked_last, "rejected": up.rejected}
