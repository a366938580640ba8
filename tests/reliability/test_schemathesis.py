"""Hostile input: schemathesis fuzzes every operation of the server's own OpenAPI document over real HTTP.
0 responses >= 500; every error in VideoDB's envelope."""
from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
EXAMPLES = 25


@pytest.mark.slow
def test_fuzz_every_operation(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    token = httpx.post(f"{server.url}/capture/session/token", headers=server.headers(),
                       json={"expires_in": 600}).json()["data"]["token"]
    failures, ops, calls = [], 0, 0
    for result in schema.get_all_operations():
        op = result.ok()
        ops += 1
        for tok in (server.api_key, token, "sk-fuzz"):
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def run(case):
                nonlocal calls
                calls += 1
                r = case.call(base_url=server.url, headers={"x-access-token": tok}, timeout=30)
                if r.status_code >= 500:
                    failures.append((op.label, r.status_code, r.text[:200]))
                elif r.status_code >= 400:
                    body = r.json()
                    if not (body.get("success") is False and body.get("message") and body.get("error_code")):
                        failures.append((op.label, r.status_code, "not in the error envelope: " + r.text[:200]))
            run()
    print(f"fuzzed {ops} operations with {calls} requests")
    assert ops >= 25 and calls > ops * 10
    assert not failures, failures[:10]
    assert httpx.get(server.url + "/health").status_code == 200
