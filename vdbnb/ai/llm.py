"""LLM engines for prompt-driven indexes: an OpenAI-compatible endpoint, a local GGUF, or an honest offline default.

``get_llm()`` picks one from the settings (:mod:`vdbnb.config`): VDBNB_LLM_URL (+ VDBNB_LLM_MODEL, VDBNB_LLM_API_KEY), else
VDBNB_LLM_GGUF, else ``OfflineLLM``. Every result names the engine that made it.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..config import Settings

SYSTEM_PROMPT = ("You read text captured from a user's desktop (speech transcripts and on-screen text). "
                 "Follow the instruction using only the given context. Answer briefly; if the context does "
                 "not contain the answer, say so.")


@dataclass
class LLMResult:
    text: str
    engine: str


@runtime_checkable
class LLM(Protocol):
    def complete(self, prompt: str, context: list[str], images: list[np.ndarray] | None = None) -> LLMResult:
        """Answer ``prompt`` from ``context`` (and optional RGB images)."""
        ...


def _user_text(prompt: str, context: list[str]) -> str:
    ctx = "\n".join(f"[{i + 1}] {c}" for i, c in enumerate(context) if c and c.strip())
    return f"Context:\n{ctx or '(empty)'}\n\nInstruction: {prompt}"


def jpeg_data_url(rgb: np.ndarray, max_side: int = 1280, quality: int = 85) -> str:
    """An RGB array as a base64 JPEG data: URL (downscaled so its longer side is at most ``max_side``)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8)[..., :3], "RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(prompt: str, context: list[str], images: list[np.ndarray] | None = None) -> list[dict]:
    """OpenAI chat-completions messages; images become image_url parts with data: URLs."""
    text = _user_text(prompt, context)
    if images:
        content: list[dict] | str = [{"type": "text", "text": text}] + [
            {"type": "image_url", "image_url": {"url": jpeg_data_url(im)}} for im in images]
    else:
        content = text
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


class OpenAICompatibleLLM:
    """Any server speaking POST {base_url}/chat/completions (OpenAI, Ollama, llama.cpp server, vLLM)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
                 max_tokens: int = 512, temperature: float = 0.2):
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url if self.base_url.endswith("/chat/completions") else \
            self.base_url + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.timeout, self.max_tokens, self.temperature = timeout, max_tokens, temperature
        self.engine = f"openai-compatible:{model}"

    def complete(self, prompt: str, context: list[str], images: list[np.ndarray] | None = None) -> LLMResult:
        import httpx

        body = {"model": self.model, "messages": chat_messages(prompt, context, images),
                "max_tokens": self.max_tokens, "temperature": self.temperature, "stream": False}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            r = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise RuntimeError(f"LLM endpoint {self.url} unreachable ({e}): check VDBNB_LLM_URL "
                               "(it should end in /v1) and that the server is running") from e
        if r.status_code in (401, 403):
            raise RuntimeError(f"LLM endpoint {self.url} refused the key (HTTP {r.status_code}): "
                               "set VDBNB_LLM_API_KEY")
        if r.status_code >= 400:
            raise RuntimeError(f"LLM endpoint {self.url} answered HTTP {r.status_code}: {r.text[:300]} "
                               f"(check VDBNB_LLM_MODEL={self.model!r})")
        try:
            data = r.json()
            msg = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise RuntimeError(f"LLM endpoint {self.url} did not answer in the chat-completions format: "
                               f"{r.text[:300]}") from e
        if isinstance(msg, list):  # content parts
            msg = "".join(p.get("text", "") for p in msg if isinstance(p, dict))
        return LLMResult((msg or "").strip(), self.engine)


class LlamaCppLLM:
    """A local GGUF model run in-process by xllamacpp (text only).

    ``chat_template``: a llama.cpp built-in template name (``gemma``, ``chatml``, ``llama3``…) or a Jinja
    template, for a GGUF that carries none (llama.cpp would otherwise fall back to chatml, which e.g. Gemma
    answers with end-of-turn tokens only); None: the GGUF's own."""

    def __init__(self, gguf_path: str, n_ctx: int = 4096, threads: int = 2, max_tokens: int = 512,
                 chat_template: str | None = None):
        try:
            import xllamacpp as xlc
        except ImportError as e:
            raise RuntimeError("xllamacpp is not installed: pip install xllamacpp (the vdbnb[llm] extra) "
                               "(or unset VDBNB_LLM_GGUF to use the offline default)") from e
        if not os.path.isfile(gguf_path):
            raise RuntimeError(f"GGUF model not found at {gguf_path}: fix VDBNB_LLM_GGUF")
        params = xlc.CommonParams()
        if hasattr(params.model, "path"):   # xllamacpp >= 0.2 (2025+): CommonParams.model is a CommonParamsModel
            params.model.path = gguf_path
        else:
            params.model = gguf_path
        if chat_template:
            params.chat_template = chat_template
        params.n_ctx = n_ctx
        params.n_predict = max_tokens
        params.warmup = False
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        self._server = xlc.Server(params)
        self._lock = threading.Lock()
        self.max_tokens = max_tokens
        self.engine = f"llama.cpp:{os.path.basename(gguf_path)}"

    def complete(self, prompt: str, context: list[str], images: list[np.ndarray] | None = None) -> LLMResult:
        body = {"messages": chat_messages(prompt, context), "max_tokens": self.max_tokens, "temperature": 0.2}
        box: dict = {}
        with self._lock:
            try:   # xllamacpp >= 0.2: a dict in, a dict out
                box["ok"] = self._server.handle_chat_completions(body)
            except TypeError:   # xllamacpp 0.1: a JSON string and two callbacks
                self._server.handle_chat_completions(json.dumps(body), lambda s: box.setdefault("err", s),
                                                     lambda s: box.setdefault("ok", s))
        data = box.get("ok")
        data = json.loads(data) if isinstance(data, str) else data
        if "err" in box or not isinstance(data, dict) or "error" in data:
            raise RuntimeError(f"llama.cpp failed: {box.get('err') or (data or {}).get('error')}")
        return LLMResult((data["choices"][0]["message"].get("content") or "").strip(), self.engine)


# ------------------------------------------------------------------------------------------- offline

_WORD_RE = re.compile(r"[a-z0-9]+")
_STOP = set("""a an the and or but if of to in on at for with by from as is are was were be been being it this
that these those what which who whom whose when where why how do does did doing have has had i you he she we they
me him her us them my your his our their its not no so than too very can could should would will just about into
over under up down out any all some each every more most other such only own same s t don now please tell show
give list find summarize summarise describe user users""".split())
_SENT_RE = re.compile(r"(?<=[.!?])\s+|\n+")


def _tokens(text: str) -> list[str]:
    return [w for w in _WORD_RE.findall(text.lower()) if w not in _STOP and len(w) > 1]


class OfflineLLM:
    """No model: picks the context items most relevant to the prompt and condenses them (extractive).

    Relevance is embedding similarity (vdbnb.ai.embed, MiniLM) when available, else keyword overlap.
    """

    engine = "offline-extractive"

    def __init__(self, max_items: int = 3, max_chars: int = 400, use_embeddings: bool = True):
        self.max_items, self.max_chars, self.use_embeddings = max_items, max_chars, use_embeddings

    def _scores(self, prompt: str, items: list[str]) -> np.ndarray:
        """Relevance of each item: embedding cosine plus a keyword-overlap bonus (keywords alone without it)."""
        kw = self._keyword_scores(prompt, items)
        if self.use_embeddings:
            try:
                from .embed import get_embedder

                v = get_embedder().embed([prompt] + items)
                return np.asarray(v[1:] @ v[0], dtype=np.float32) + 0.3 * kw
            except Exception:  # embedder missing or failing: keyword overlap only
                pass
        return kw

    @staticmethod
    def _keyword_scores(prompt: str, items: list[str]) -> np.ndarray:
        q = set(_tokens(prompt))
        out = []
        for it in items:
            t = _tokens(it)
            if not t or not q:
                out.append(0.0)
                continue
            stems = {w[:5] for w in q if len(w) >= 5}
            hits = sum(1 for w in t if w in q or (len(w) >= 5 and w[:5] in stems))
            out.append(len(q & set(t)) / len(q) + 0.1 * hits / len(t))
        return np.asarray(out, dtype=np.float32)

    def complete(self, prompt: str, context: list[str], images: list[np.ndarray] | None = None) -> LLMResult:
        items = [c.strip() for c in context if c and c.strip()]
        if not items:
            return LLMResult("", self.engine)
        scores = self._scores(prompt, items)
        best = float(scores.max())
        order = [int(i) for i in np.argsort(-scores)]
        floor = max(best - 0.12, best * 0.7)
        picked = [i for i in order[: self.max_items] if scores[i] >= floor and scores[i] > 0] or order[:1]
        picked.sort()  # keep the original (time) order
        parts: list[str] = []
        for i in picked:
            parts.append(self._condense(prompt, items[i]))
        text = " … ".join(dict.fromkeys(p for p in parts if p))
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1].rsplit(" ", 1)[0] + "…"
        return LLMResult(text, self.engine)

    def _condense(self, prompt: str, item: str, max_sentences: int = 2) -> str:
        sents = [s.strip() for s in _SENT_RE.split(item) if s.strip()]
        if len(sents) <= max_sentences:
            return " ".join(sents)
        q = set(_tokens(prompt))
        ranked = sorted(range(len(sents)), key=lambda i: -len(q & set(_tokens(sents[i]))))
        keep = sorted(ranked[:max_sentences])
        return " ".join(sents[i] for i in keep)


_LLM: LLM | None = None
_LLM_KEY: tuple | None = None
_LLM_LOCK = threading.Lock()


def get_llm(settings: Settings | None = None) -> LLM:
    """The configured engine: VDBNB_LLM_URL/_MODEL/_API_KEY, else VDBNB_LLM_GGUF, else OfflineLLM (cached per
    configuration). ``settings``: default the AI engines' (:func:`vdbnb.ai.settings`)."""
    global _LLM, _LLM_KEY
    if settings is None:
        from . import settings as ai_settings

        settings = ai_settings()
    url, model, key, gguf = settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_gguf
    cfg = (url, model, key, gguf, settings.llm_chat_template)
    with _LLM_LOCK:
        if _LLM is not None and _LLM_KEY == cfg:
            return _LLM
        if url:
            llm: LLM = OpenAICompatibleLLM(url, model or "default", key)
        elif gguf:
            llm = LlamaCppLLM(gguf, chat_template=settings.llm_chat_template)
        else:
            llm = OfflineLLM()
        _LLM, _LLM_KEY = llm, cfg
        return llm
