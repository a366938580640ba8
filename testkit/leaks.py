"""Secrets made per run and where they might leak: generated keys and passwords whose every 4-character run can
only come from them, spoken passphrases, and every text a server stored or sent."""
from __future__ import annotations

import sqlite3


def runs(secret: str, n: int = 4) -> set[str]:
    """Every n-character run of ``secret`` (what must not appear anywhere once it is redacted)."""
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def leaked(secret: str, text: str, n: int = 4, ignore_case: bool = False) -> list[str]:
    """The n-character runs of ``secret`` found in ``text`` (empty: nothing of it is there), each with the
    text around its first occurrence."""
    low = text.lower() if ignore_case else text
    out = []
    for r in sorted(runs(secret.lower() if ignore_case else secret, n)):
        i = low.find(r)
        if i >= 0:
            out.append(f"{r!r} in ...{text[max(0, i - 60):i + 60]!r}...")
    return out


# Secrets made per run (outside checks use others). Every 4-character run of a generated key or password holds
# an upper-case letter, a digit and a letter past 'f': no such run can occur by chance in a hex id, a number,
# a JSON field name or English prose, so finding one anywhere means the secret leaked.
_CLASSES = ("GHJKLMNPQRSTUVWXYZ", "23456789", "ghjkmnpqrstuvwxyz")


def random_secret(n: int, rng=None) -> str:
    import random
    rng = rng or random.SystemRandom()
    return "".join(rng.choice(_CLASSES[i % 3]) for i in range(n))


def random_api_key(rng=None) -> str:
    return "sk-live-" + random_secret(32, rng)


# Words the live speech-to-text (tiny.en) hears reliably after "My password is" / "My API key is" when
# espeak-ng speaks them at 140 words a minute (checked on the dev set; a spoken passphrase is words).
# (Words that share a 4-run with the server's own vocabulary are left out: pelican/pipeline, rocket/websocket,
# cobalt/global, pepper/wrapper.)
SPOKEN_WORDS = ("tiger", "dragon", "cactus", "lemon", "falcon", "meadow", "saddle", "bamboo", "mango", "castle",
                "wizard")


def spoken_passphrase(k: int = 3, avoid: str = "", rng=None) -> list[str]:
    """``k`` distinct words of SPOKEN_WORDS, none sharing a 4-character run with ``avoid`` (the run's other
    text), so that a run of the passphrase found anywhere can only come from the passphrase."""
    import random
    rng = rng or random.SystemRandom()
    pool = [w for w in SPOKEN_WORDS if not leaked(w, avoid, ignore_case=True)]
    return rng.sample(pool, k)


def strings(v) -> list[str]:
    """Every string value inside a JSON-like value (not the keys: those are the code's)."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in strings(x)]
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in strings(x)]
    return []


def db_texts(path) -> list[str]:
    """Every text value in every table of an SQLite file."""
    out = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            try:
                rows = db.execute(f'SELECT * FROM "{t}"').fetchall()
            except sqlite3.DatabaseError:
                continue
            out += [v for r in rows for v in r if isinstance(v, str)]
    finally:
        db.close()
    return out

