"""Bad input in every search and filter field is a 400 in VideoDB's error envelope (never a 500), and the
filter forms that are valid still work: vdbnb's object and the videodb SDK's list of objects."""
from __future__ import annotations

import httpx
import pytest

from testkit.media import audio_fragments

BAD_FILTERS = [
    {"start": "x"}, {"end": "yesterday"}, {"start": float("nan")}, {"start": 1e300}, {"end": [1, 2]},
    {"start": 10, "end": 5}, {"kind": 7}, {"kind": ["transcript", 3]}, {"kinds": {"a": 1}}, {"kind": ""},
    {"channel_id": [None]}, {"channel": ["x" * 500]}, {"session_id": 12}, {"session_id": {"$ne": 1}},
    {"rtstream_id": []}, {"no_such_key": 1}, "start=5", 42, [1], [{"start": "x"}], ["a"], {"kind": ["k"] * 100},
]
GOOD_FILTERS = [None, {}, [], {"start": 0, "end": 4e9}, {"kind": "transcript"}, {"kinds": ["transcript", "ocr"]},
                [{"start": 0}, {"channel_id": "mic"}], {"session_id": "cap-none"}, {"start": "12.5"}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from testkit.server import ServerProc
    s = ServerProc(tmp_path_factory.mktemp("filters"))
    s.args = ["--no-ai"]
    s.start()
    h = s.headers()
    sid = httpx.post(f"{s.url}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "f"}).json()["data"]["session_id"]
    tok = {"x-access-token": httpx.post(f"{s.url}/capture/session/token", headers=h, json={}).json()["data"]["token"]}
    httpx.post(f"{s.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
    for f in audio_fragments("mic:default", 0.5):
        httpx.post(f"{s.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    s.rid = httpx.get(f"{s.url}/collection/default/capture/session/{sid}", headers=h).json()["data"][
        "rtstreams"][0]["id"]
    yield s
    s.stop()


def _bad(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    b = r.json()
    assert b["success"] is False and b["error_code"] == "INVALID_REQUEST" and "filter" in b["message"], b


@pytest.mark.parametrize("flt", BAD_FILTERS, ids=[repr(f)[:40] for f in BAD_FILTERS])
def test_bad_search_filters_are_400(srv, flt):
    import json
    body = json.dumps({"query": "budget", "filter": flt}, allow_nan=True)
    for path in ("/rtstream/collection/default/search", f"/rtstream/{srv.rid}/search"):
        _bad(httpx.post(srv.url + path, headers={**srv.headers(), "content-type": "application/json"},
                        content=body))


@pytest.mark.parametrize("flt", GOOD_FILTERS, ids=[repr(f)[:40] for f in GOOD_FILTERS])
def test_valid_filters_still_work(srv, flt):
    for path in ("/rtstream/collection/default/search", f"/rtstream/{srv.rid}/search"):
        body = {"query": "budget"} if flt is None else {"query": "budget", "filter": flt}
        r = httpx.post(srv.url + path, headers=srv.headers(), json=body)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["data"]["results"] == []


@pytest.mark.parametrize("value", ["x", "nan", "inf", "-inf", "1e400", "1e12"])
def test_bad_time_filters_in_query_parameters_are_400(srv, value):
    h = srv.headers()
    for path, name in ((f"/rtstream/{srv.rid}/transcription", "start"), (f"/rtstream/{srv.rid}/transcription", "end"),
                       (f"/rtstream/{srv.rid}/transcription", "since"), ("/collection/default/events", "since")):
        r = httpx.get(srv.url + path, headers=h, params={name: value})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_REQUEST", (path, name, value, r.text)
