"""vdbnb's test rig, from Python: bring it up, read its environment, stop what you started.

The rig is part of this repository, not of the ``vdbnb`` package (it is not in the wheel): the tests, the
benchmarks and the tutorial notebooks use it to give a headless box real screens and real sound. The work is
done by ``rig-up.sh`` / ``rig-down.sh`` beside this file; see ``rig/README.md``.

    import rig
    r = rig.up()            # idempotent; r.env = DISPLAY, PULSE_SERVER, ... ; r.started = what THIS call started
    os.environ.update(r.env)
    ...
    r.down()                # stops only r.started (nothing when the rig was already up)

``rig.tutorial`` holds the input helpers of the tutorial notebooks (speech, windows).
"""
from __future__ import annotations

import atexit
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
UP = HERE / "rig-up.sh"
DOWN = HERE / "rig-down.sh"
VARS = ("DISPLAY", "PULSE_SERVER", "XDG_RUNTIME_DIR", "ALSA_CONFIG_PATH", "RIG_DISPLAY", "RIG_DIR", "RIG_STARTED")

__all__ = ["Rig", "RigError", "up", "use", "free_display", "UP", "DOWN"]


class RigError(RuntimeError):
    """rig-up.sh failed; the message is its own (what is missing and the command to fix it)."""


@dataclass
class Rig:
    env: dict[str, str]
    started: list[str] = field(default_factory=list)

    @property
    def display(self) -> str:
        return self.env["DISPLAY"]

    def down(self) -> None:
        """Stop the parts this :func:`up` call started (by their recorded pids); nothing if it started none."""
        if self.started:
            run_env = {**os.environ, **self.env, "RIG_STARTED": " ".join(self.started)}
            subprocess.run(["bash", str(DOWN)], env=run_env, capture_output=True, timeout=60)
            self.started = []


def up(display: str | None = None, timeout: float = 900) -> Rig:
    """Bring the rig up on ``display`` (default ``$RIG_DISPLAY``, else ``:97``) and return its environment.

    Idempotent: a rig already up on that display is reused (and ``started`` is empty). Raises
    :class:`RigError` with rig-up's own message when it cannot (missing packages: the apt-get line)."""
    env = dict(os.environ)
    if display:
        env["RIG_DISPLAY"] = display
        env.pop("RIG_DIR", None)
    r = subprocess.run(["bash", str(UP)], env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RigError(f"rig-up.sh failed (exit {r.returncode}):\n{r.stderr.strip()}")
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            vals = shlex.split(v)
            out[k] = vals[0] if vals else ""
    started = out.pop("RIG_STARTED", "").split()
    return Rig(env={k: out[k] for k in VARS if k in out}, started=started)


def use(display: str | None = None) -> Rig:
    """For scripts (benchmarks): :func:`up`, put its variables into ``os.environ`` (children inherit them) and
    stop what it started when the interpreter exits."""
    r = up(display)
    os.environ.update(r.env)
    atexit.register(r.down)
    return r


def free_display(first: int = 150, last: int = 400) -> str:
    """A display number no X server holds (no /tmp/.X<n>-lock, no socket, no rig dir of anyone)."""
    tmp = os.environ.get("TMPDIR", "/tmp")
    for n in range(first, last):
        if not any(Path(p).exists() for p in (f"/tmp/.X{n}-lock", f"/tmp/.X11-unix/X{n}", f"{tmp}/vdbnb-rig{n}")):
            return f":{n}"
    raise RigError(f"no free X display number in :{first}..:{last - 1}")
