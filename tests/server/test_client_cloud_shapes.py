"""vdbnb's backend client against VideoDB's cloud shapes. The cloud is outside this machine, so this fake
speaks its wire format as the reference documents it (shared/reference/videodb-capture-api.md §3, §4):
`x-access-token`, `{"success": true, "data": …}`, rtstreams carrying only `rtstream_id`, a doubly wrapped
get, `{"success": false, "message"}` errors, 401 for a bad key."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import vdbnb
from vdbnb.errors import AuthenticationError, InvalidRequestError

KEY = "sk-cloud-test"
SESSION = {"session_id": "cap-abc", "collection_id": "default", "status": "active", "end_user_id": "u1",
           "channels": [{"channel_id": "display:1", "name": "Display", "type": "video", "is_primary": True},
                        {"channel_id": "mic:default", "name": "Mic", "type": "audio"}],
           "rtstreams": [{"rtstream_id": "rts-1", "name": "mic:default", "channel_id": "mic", "media_types": ["audio"]},
                         {"rtstream_id": "rts-2", "name": "display:1", "channel_id": "screen", "media_types": ["video"]}]}


class Cloud(BaseHTTPRequestHandler):
    seen: list = []

    def _reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method):
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}") if n else {}
        Cloud.seen.append((method, self.path, self.headers.get("x-access-token"), body))
        if self.headers.get("x-access-token") != KEY:
            return self._reply(401, {"success": False, "message": "Invalid API key"})
        p = self.path.split("?")[0]
        if method == "POST" and p == "/collection/default/capture/session":
            return self._reply(200, {"success": True, "data": {"session_id": "cap-abc", "collection_id": "default",
                                                                "status": "created", "end_user_id": body["end_user_id"]}})
        if method == "GET" and p == "/collection/default/capture/session/cap-abc":
            return self._reply(200, {"success": True, "data": {"data": SESSION}})
        if method == "POST" and p == "/capture/session/token":
            return self._reply(200, {"success": True, "data": {"token": "st-xyz", "expires_in": body["expires_in"]}})
        if method == "POST" and p == "/rtstream/rts-1/transcription":
            return self._reply(200, {"success": True, "data": {"status": "running", "engine": "default"}})
        if method == "POST" and p == "/rtstream/rts-1/search":
            return self._reply(200, {"success": True, "data": {"results": [
                {"start": 1764000000.5, "end": 1764000003.0, "text": "budget review", "score": 0.91,
                 "scene_index_id": None}]}})
        if method == "GET" and p == "/collection/default/capture/session":
            return self._reply(200, {"success": False, "message": "status filter not supported"})
        return self._reply(404, {"success": False, "message": f"no route {p}"})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def log_message(self, *a):
        pass


@pytest.fixture
def cloud():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Cloud)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Cloud.seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_client_speaks_the_cloud_wire_format(cloud):
    conn = vdbnb.connect(api_key=KEY, base_url=cloud)
    cap = conn.create_capture_session(end_user_id="u1")
    assert cap.id == "cap-abc" and cap.status == "created"
    assert conn.generate_client_token(expires_in=600) == "st-xyz"
    cap = conn.get_capture_session("cap-abc")        # doubly wrapped, rtstream_id only
    mic = cap.get_rtstream("mic")[0]
    assert mic.id == "rts-1" and cap.get_rtstream("screens")[0].id == "rts-2"
    assert [d.id for d in cap.displays] == ["display:1"] and cap.displays[0].is_primary
    assert mic.start_transcript()["status"] == "running"
    shots = mic.search("budget").get_shots()
    assert shots[0].search_score == 0.91 and shots[0].rtstream_id == "rts-1" and shots[0].start == 1764000000.5
    with pytest.raises(InvalidRequestError, match="status filter not supported"):
        conn.list_capture_sessions(status="active")
    with pytest.raises(AuthenticationError):
        vdbnb.connect(api_key="sk-wrong", base_url=cloud).get_capture_session("cap-abc")
    methods = [(m, p) for m, p, _, _ in Cloud.seen]
    assert ("POST", "/collection/default/capture/session") in methods
    assert all(tok in (KEY, "sk-wrong") for _, _, tok, _ in Cloud.seen)
    create = next(b for m, p, _, b in Cloud.seen if p == "/collection/default/capture/session" and m == "POST")
    assert create == {"end_user_id": "u1"}           # optional fields are omitted, as the SDK does
