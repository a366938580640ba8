"""Waiting for a condition with a deadline (never a bare sleep): ``wait_for`` raises with what did not happen,
``wait_until`` returns the last value for the caller to assert on."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

V = TypeVar("V")


def wait_until(pred: Callable[[], V], timeout: float, step: float = 0.1) -> V:
    """Call ``pred`` until it returns something truthy or ``timeout`` s passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def wait_for(cond: Callable[[], V], timeout: float, what: str, step: float = 0.05) -> V:
    """Call ``cond`` until it returns something truthy (returned) or ``timeout`` s passed: then AssertionError
    "<what> did not happen within <timeout> s" (with the last value when it says more than False/None)."""
    v = wait_until(cond, timeout, step)
    if not v:
        last = "" if v in (None, False) else f" (last: {v!r})"
        raise AssertionError(f"{what} did not happen within {timeout:g} s{last}")
    return v


def wait_for_value(fn: Callable[[], V], what: str, timeout: float, step: float = 0.25) -> V:
    """:func:`wait_for` with ``what`` before ``timeout`` (the browser tests' spelling)."""
    return wait_for(fn, timeout, what, step)
