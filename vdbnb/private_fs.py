"""Private files: everything vdbnb writes about a capture (database, media, spool, exports, keys) is readable
by its owner only. Directories 0700, files 0600, on every path that creates them; processes vdbnb owns (the
server, the recorder) also run with umask 077 as a backstop for files written by libraries (SQLite's -wal and
-shm files, PyAV's muxer, uvicorn)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> int:
    """Set the process umask to 077 (owner only); returns the previous one. For vdbnb's own processes only:
    a notebook kernel keeps the user's umask (vdbnb.connect() creates its files with explicit modes)."""
    return os.umask(0o077)


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) as 0700; an existing ``path`` owned by us is tightened to 0700.
    Parents that already exist are left as they are (they may be shared, like ~/.cache)."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)
    tighten(p)
    return p


def tighten(path: str | os.PathLike) -> None:
    """Remove group/other permissions from ``path`` if it exists and is ours (never loosens)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def tighten_sqlite(path: str | os.PathLike) -> None:
    """An SQLite database and its WAL side files: owner only."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        tighten(f"{path}{suffix}")


def open_private(path: str | os.PathLike, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` with mode 0600 (and the mode fixed if the file existed with a wider one)."""
    fd = os.open(str(path), flags, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: str | os.PathLike, data: bytes | str, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename), mode 0600."""
    p = Path(path)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    fd = open_private(tmp)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, p)
    return p


def append_private(path: str | os.PathLike):
    """A file object appending to ``path`` (created 0600): logs."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
