"""The servers a recorder may send to: one URL (a server, or a load balancer in front of replicas) or several
api replicas sharing one store ("http://a:8765,http://b:8765"); the uplink moves on to the next replica when
its replica is gone (docs/scale-out.md)."""
from __future__ import annotations


class MovedReplica(Exception):
    """Ends one replica's reconnecting connect(): the uplink moves on to the next replica."""


def server_urls(api_url: str | list[str]) -> list[str]:
    """``"http://a:8765, http://b:8765"`` or a list → the replicas' base URLs."""
    urls = api_url if isinstance(api_url, (list, tuple)) else str(api_url).split(",")
    urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
    if not urls:
        raise ValueError("no server URL given: pass apiUrl (one URL, a load balancer, or several replicas "
                         "separated by commas)")
    return urls


def ingest_url_of(api_url: str, session_id: str) -> str:
    base = api_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}/capture/session/{session_id}/ingest"
