"""The capture clock of an audio channel (recorder/audio.py CaptureClock): a reader that falls behind on a busy
box must not move the stamps (no sample was lost), a real loss of samples must.

Arrival times are given explicitly: the rule is about what the reader saw, so the test is exact."""
from __future__ import annotations

from vdbnb.recorder.audio import FRAME as BLOCK, CaptureClock

RATE = 48000
DT = BLOCK / RATE  # 60 ms of audio per block
LATENCY = 0.005


def reader(t0: float, n: int, stalls=(), lost: tuple[float, float] | None = None) -> list[float]:
    """Arrival times of n blocks captured from t0: on time, except that during each (start, length) stall the
    reader was not scheduled (what came meanwhile is read at once when it wakes up); ``lost`` = (at, length):
    the device delivered nothing for ``length`` s from ``at`` and those samples are gone."""
    out = []
    for i in range(n):
        t = t0 + (i + 1) * DT + LATENCY
        if lost and t >= lost[0]:
            t += lost[1]
        for s, d in stalls:
            if s <= t < s + d:
                t = s + d + 0.0005 * len(out) % 0.01
        out.append(max(t, out[-1] if out else t))
    return out


def run(arrivals: list[float]) -> tuple[CaptureClock, list[float]]:
    clock = CaptureClock(RATE)
    return clock, [clock.stamp(BLOCK, a) for a in arrivals]


def steps(stamps: list[float]) -> list[float]:
    """The jump of each stamp against the end of the block before it (0 = contiguous)."""
    return [round(b - (a + DT), 4) for a, b in zip(stamps, stamps[1:])]


def test_a_late_reader_keeps_the_sample_clock():
    t0 = 1_000.0
    clock, stamps = run(reader(t0, 60, stalls=[(t0 + 1.2, 0.6)]))
    assert clock.reanchors == 0
    assert all(abs(s) < 1e-6 for s in steps(stamps)), steps(stamps)
    assert abs(stamps[0] - t0) < 0.01


def test_a_reader_stalled_longer_than_the_confirmation_or_again_and_again_keeps_the_sample_clock():
    t0 = 2_000.0
    stalls = [(t0 + 1.0, 1.6)] + [(t0 + 3.0 + 0.9 * k, 0.45) for k in range(8)]
    clock, stamps = run(reader(t0, 200, stalls=stalls))
    assert clock.reanchors == 0
    assert all(abs(s) < 1e-6 for s in steps(stamps)), steps(stamps)


def test_lost_samples_move_the_stamps_by_what_was_lost():
    t0 = 3_000.0
    clock, stamps = run(reader(t0, 60, lost=(t0 + 1.2, 0.6)))
    assert clock.reanchors == 1
    jumps = [s for s in steps(stamps) if abs(s) > 1e-6]
    assert len(jumps) == 1 and abs(jumps[0] - 0.6) < 0.01, steps(stamps)
    # after the re-anchor the stamps are the true capture times again
    assert abs(stamps[-1] - (t0 + 59 * DT + 0.6)) < 0.01
