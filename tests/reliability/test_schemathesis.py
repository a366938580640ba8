"""Hostile input: schemathesis fuzzes every operation of the server's own OpenAPI document over real HTTP.
0 responses >= 500; every error in VideoDB's envelope.

Random ids in paths stop at 404 before any body or filter is looked at, so half of the examples of each
operation get real ids (a seeded collection, session, audio stream with media, index, event, alert and exported
video): the fuzzer reaches the handlers behind the 404 (search filters, index configs, alert bodies...).
Operations that destroy what the others need (DELETE) run last."""
from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.media import audio_fragments

schemathesis = pytest.importorskip("schemathesis")
EXAMPLES = 25


def seed(server) -> dict:
    """Real objects whose ids replace the fuzzer's path parameters."""
    h = server.headers()
    sid = httpx.post(f"{server.url}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "fuzz"}).json()["data"]["session_id"]
    tok = {"x-access-token": httpx.post(f"{server.url}/capture/session/token", headers=h, json={}).json()["data"][
        "token"]}
    httpx.post(f"{server.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio", "store": True}]}).raise_for_status()
    for f in audio_fragments("mic:default", 1.0, t0=time.time() - 2):
        httpx.post(f"{server.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    rid = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=h).json()["data"][
        "rtstreams"][0]["id"]
    idx = httpx.post(f"{server.url}/rtstream/{rid}/index/scene", headers=h, json={
        "extraction_type": "transcript", "prompt": "what was said"}).json()["data"]["rtstream_index_id"]
    eid = httpx.post(f"{server.url}/rtstream/event", headers=h, json={"event_prompt": "a secret", "label": "s"}).json()[
        "data"]["event_id"]
    aid = httpx.post(f"{server.url}/rtstream/{rid}/index/{idx}/alert", headers=h,
                     json={"event_id": eid}).json()["data"]["alert_id"]
    httpx.post(f"{server.url}/capture/session/{sid}/stop", headers=tok).raise_for_status()
    vid = None
    for _ in range(200):
        d = httpx.post(f"{server.url}/collection/default/capture/session/{sid}/export", headers=h).json()["data"]
        if d.get("export_status") != "exporting":
            vid = d.get("video_id")
            break
        time.sleep(0.2)
    assert vid, "the seeded session exports"
    return {"cid": "default", "sid": sid, "rid": rid, "idx": idx, "aid": aid, "vid": vid, "event_id": eid}


@pytest.mark.slow
def test_fuzz_every_operation(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    token = httpx.post(f"{server.url}/capture/session/token", headers=server.headers(),
                       json={"expires_in": 600}).json()["data"]["token"]
    ids = seed(server)
    ops = [r.ok() for r in schema.get_all_operations()]
    ops.sort(key=lambda op: op.method.upper() == "DELETE")  # destructive ones last
    failures, calls = [], 0
    seeded_status: dict[str, list[int]] = {}
    for op in ops:
        for tok in (server.api_key, token, "sk-fuzz"):
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(), real_ids=st.booleans())
            def run(case, real_ids):
                nonlocal calls
                if real_ids and case.path_parameters:
                    case.path_parameters = {k: ids.get(k, v) for k, v in case.path_parameters.items()}
                calls += 1
                r = case.call(base_url=server.url, headers={"x-access-token": tok}, timeout=30)
                if real_ids and case.path_parameters and tok == server.api_key:
                    seeded_status.setdefault(op.label, []).append(r.status_code)
                if r.status_code >= 500:
                    failures.append((op.label, r.status_code, r.text[:200]))
                elif r.status_code >= 400:
                    body = r.json()
                    if not (body.get("success") is False and body.get("message") and body.get("error_code")):
                        failures.append((op.label, r.status_code, "not in the error envelope: " + r.text[:200]))
            run()
    print(f"fuzzed {len(ops)} operations with {calls} requests")
    assert len(ops) >= 25 and calls > len(ops) * 10
    assert not failures, failures[:10]
    # with real ids the fuzzer got past 404 on (nearly) every operation that has path parameters
    past = {label: sum(s != 404 for s in codes) for label, codes in seeded_status.items()}
    reached = [label for label, n in past.items() if n]
    print("operations reached past 404 with real ids:", len(reached), "of", len(past))
    assert len(reached) >= 0.8 * len(past), {k: v for k, v in past.items() if not v}
    assert httpx.get(server.url + "/health").status_code == 200
