"""Every route × {no key, wrong key, API key, client token, expired client token, other collection's token,
agent token}: 0 wrong accepts; a client token never reaches an admin call; an agent token reaches the read
routes only."""
from __future__ import annotations

import re
import time

import httpx

RECORDER_OPS = {("POST", "/capture/session/start"), ("GET", "/capture/session/{sid}"),
                ("POST", "/capture/session/{sid}/stop"), ("POST", "/capture/session/{sid}/fragment")}
PUBLIC_OPS = {("GET", "/health")}
# what a read-only agent token (vdbnb mcp) may call
READER_OPS = {("GET", "/collection/{cid}"), ("GET", "/collection/{cid}/capture/session"),
              ("GET", "/collection/{cid}/capture/session/{sid}"), ("GET", "/collection/{cid}/events"),
              ("GET", "/collection/{cid}/websocket"), ("POST", "/rtstream/collection/{cid}/search"),
              ("GET", "/rtstream"), ("GET", "/rtstream/{rid}"), ("GET", "/rtstream/{rid}/transcription"),
              ("GET", "/rtstream/{rid}/transcription/status"), ("GET", "/rtstream/{rid}/index/scene"),
              ("POST", "/rtstream/{rid}/search"), ("GET", "/rtstream/{rid}/stream"), ("GET", "/rtstream/{rid}/frame"),
              ("GET", "/agent/whoami"), ("POST", "/collection/{cid}/agent/tool_call")}


def test_every_route_every_principal(server):
    u, h = server.url, server.headers()
    other = httpx.post(f"{u}/collection", headers=h, json={"name": "other"}).json()["data"]["id"]

    def mint(coll="default", ttl=600):
        return httpx.post(f"{u}/capture/session/token", headers={**h, "x-collection-id": coll},
                          json={"expires_in": ttl}).json()["data"]["token"]
    client, other_tok, expired = mint(), mint(other), mint(ttl=1)
    agent = httpx.post(f"{u}/agent/token", headers=h, json={}).json()["data"]["token"]
    sid = httpx.post(f"{u}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "u"}).json()["data"]["session_id"]
    time.sleep(1.1)
    spec = httpx.get(f"{u}/openapi.json").json()
    ops = [(m.upper(), p) for p, item in spec["paths"].items() for m in item]
    ops.sort(key=lambda o: o[0] == "DELETE")  # deleting the session (with the API key) comes after its other uses
    assert len(ops) >= 30
    wrong = []
    for method, path in ops:
        if (method, path) in PUBLIC_OPS:
            continue
        url = u + re.sub(r"\{(\w+)\}", lambda m: {"sid": sid, "cid": "default"}.get(m.group(1), "x-1"), path)
        body = {"session_id": sid, "channels": [{"channel_id": "mic:default", "type": "audio"}]} \
            if path == "/capture/session/start" else {}
        recorder = (method, path) in RECORDER_OPS
        for name, tok in (("none", None), ("wrong", "sk-not-a-key"), ("expired", expired), ("client", client),
                          ("other", other_tok), ("garbage", "st-" + "A" * 40)):
            if name == "client" and recorder:
                continue
            hdr = {"x-access-token": tok} if tok else {}
            r = httpx.request(method, url, headers=hdr, json=body if method in ("POST", "PATCH") else None)
            expect = {"none": 401, "wrong": 401, "expired": 401, "garbage": 401, "client": 403,
                      "other": 403}[name]
            if r.status_code != expect or r.json().get("success") is not False:
                wrong.append((method, path, name, r.status_code))
        r = httpx.request(method, url, headers=h, json=body if method in ("POST", "PATCH") else None)
        if r.status_code in (401, 403) or r.status_code >= 500:
            wrong.append((method, path, "api_key", r.status_code))
        r = httpx.request(method, url, headers={"x-access-token": agent},
                          json=body if method in ("POST", "PATCH") else None)
        ok = r.status_code not in (401, 403) and r.status_code < 500
        if ok != ((method, path) in READER_OPS):
            wrong.append((method, path, "agent", r.status_code))
    assert len(READER_OPS & set(ops)) == len(READER_OPS), READER_OPS - set(ops)
    assert not wrong, wrong
