"""The sandbox's one time source (world.md): rate limits, token lifetimes, processing delays, bulk progress,
sleeps and every timestamp a system shows. Real time from the moment the sandbox starts, or driven by hand.

All methods speak clock seconds; `scaled(s)` turns a documented duration into clock seconds (time_scale 0.01:
a documented 60 s delay lasts 0.6 s)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from omnirecon_contract.timeutil import utcnow


class SandboxClock:
    """monotonic(): seconds since the start; now(): that instant as an aware UTC datetime (`started_at` + elapsed)."""

    manual = False

    def __init__(self, started_at: datetime | None = None, time_scale: float = 1.0, elapsed: float = 0.0):
        """`elapsed`: seconds the clock has already run since `started_at` (a scenario loaded a moment ago)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.started_at = started_at or utcnow()
        self.time_scale = time_scale
        self._t0 = time.monotonic() - max(0.0, elapsed)

    def monotonic(self) -> float:
        return time.monotonic() - self._t0

    def now(self) -> datetime:
        return self.started_at + timedelta(seconds=self.monotonic())

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wait(self, cond: threading.Condition, seconds: float | None) -> None:
        """Wait on `cond` (held by the caller) until notified or `seconds` pass."""
        cond.wait(None if seconds is None else max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        raise RuntimeError("the real-time sandbox clock cannot be advanced")


Clock = SandboxClock


class ManualClock(SandboxClock):
    """Time moves only when advance() is called (sleep() advances it at once): deterministic tests."""

    manual = True

    def __init__(self, started_at: datetime | None = None, time_scale: float = 1.0):
        super().__init__(started_at, time_scale)
        self._t = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, cond: threading.Condition, seconds: float | None) -> None:
        cond.wait(0.05)   # the test thread drives the world; a background loop only idles

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        with self._lock:
            self._t += seconds
