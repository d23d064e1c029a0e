"""Clocks for tests: waits through them instead of patching module delay constants."""
from __future__ import annotations

import time
from datetime import timedelta

from omnirecon.timeutil import utcnow


class FakeClock:
    """No real waiting: sleeps are recorded and advance `now`."""

    def __init__(self, start=None):
        self._now = start or utcnow()
        self.sleeps: list[float] = []

    def now(self):
        return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += timedelta(seconds=seconds)


class ScaledClock:
    """Real waits, shortened by `factor` (for tests against the sandbox, which runs on a scaled clock too)."""

    def __init__(self, factor: float):
        self.factor = factor

    def now(self):
        return utcnow()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds * self.factor)
