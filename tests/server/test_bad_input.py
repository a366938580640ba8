"""Bad input gets a clear 4xx in VideoDB's envelope and loses nothing."""
from __future__ import annotations

import httpx

from testkit.media import audio_fragments


def check(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    b = r.json()
    assert b["success"] is False and len(b["message"]) > 10 and b["error_code"]
    return b


def test_malformed_and_unknown(server):
    u, h = server.url, server.headers()
    check(httpx.post(f"{u}/collection/default/capture/session", headers={**h, "content-type": "application/json"},
                     content=b"{not json"), 400)
    check(httpx.post(f"{u}/collection/default/capture/session", headers=h, json={"metadata": {}}), 400)
    check(httpx.post(f"{u}/collection/default/capture/session", headers=h, json=["a"]), 400)
    check(httpx.get(f"{u}/collection/default/capture/session/cap-nope", headers=h), 404)
    check(httpx.get(f"{u}/collection/nope/capture/session", headers=h), 404)
    check(httpx.get(f"{u}/rtstream/rts-nope", headers=h), 404)
    check(httpx.get(f"{u}/no/such/route", headers=h), 404)
    check(httpx.delete(f"{u}/collection/default", headers=h), 405)
    check(httpx.post(f"{u}/capture/session/token", headers=h, json={"expires_in": -5}), 400)
    check(httpx.post(f"{u}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "u", "callback_url": "file:///etc/passwd"}), 400)
    big = b'{"end_user_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    check(httpx.post(f"{u}/collection/default/capture/session", headers={**h, "content-type": "application/json"},
                     content=big), 413)
    # numbers past what SQLite and epoch arithmetic hold (schemathesis found offset=2**63 → 500 once)
    for url in (f"{u}/rtstream?offset={2**63}", f"{u}/collection/default/capture/session?offset={10**30}"):
        check(httpx.get(url, headers=h), 400)
    # trailing slashes are accepted
    assert httpx.get(f"{u}/collection/default/capture/session/", headers=h).status_code == 200


def test_illegal_transitions_and_fragments(server):
    u, h = server.url, server.headers()
    sid = httpx.post(f"{u}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "u"}).json()["data"]["session_id"]
    tok = httpx.post(f"{u}/capture/session/token", headers=h, json={}).json()["data"]["token"]
    ch = {"x-access-token": tok}
    check(httpx.post(f"{u}/collection/default/capture/session/{sid}/export", headers=h, json={}), 409)
    check(httpx.post(f"{u}/capture/session/{sid}/stop", headers=ch), 409)
    check(httpx.post(f"{u}/capture/session/start", headers=ch, json={"session_id": sid, "channels": []}), 400)
    check(httpx.post(f"{u}/capture/session/start", headers=ch,
                     json={"session_id": sid, "channels": [{"channel_id": "bogus id!"}]}), 400)
    ok = {"session_id": sid, "channels": [{"channel_id": "mic:default", "type": "audio"}]}
    assert httpx.post(f"{u}/capture/session/start", headers=ch, json=ok).status_code == 200
    check(httpx.post(f"{u}/capture/session/start", headers=ch,
                     json={"session_id": sid, "channels": [{"channel_id": "display:9", "type": "video"}]}), 409)
    frags = audio_fragments("mic:default", 1.0)
    good = frags[0].pack()
    check(httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=good[:10]), 400)
    check(httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=good[:-3]), 400)
    check(httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=b"\x00\x00\x00\x05hello"), 400)
    wrong = audio_fragments("display:1", 0.2)[0].pack()
    check(httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=wrong), 400)
    # a good fragment, then the same one again (replay): stored once
    r1 = httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=good).json()["data"]
    r2 = httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=good).json()["data"]
    assert r1["duplicate"] is False and r2["duplicate"] is True
    # out of order: seq 2 before seq 1; the contiguous mark waits for 1
    assert httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=frags[2].pack()).status_code == 200
    poll = httpx.get(f"{u}/capture/session/{sid}", headers=ch).json()["data"]
    assert poll["acked"]["mic:default"] == 0
    httpx.post(f"{u}/capture/session/{sid}/fragment", headers=ch, content=frags[1].pack()).raise_for_status()
    assert httpx.get(f"{u}/capture/session/{sid}", headers=ch).json()["data"]["acked"]["mic:default"] == 2
    files = server.backend.fragments(server.data_dir, sid)
    assert len(files) == 3 and sorted(len(b) for b in files.values()) == sorted(len(f.pack()) for f in frags[:3])
