"""Time helpers: UTC everywhere, ISO-8601 in and out, scenario offsets (the contract's, re-exported), and the
injectable clock that waits go through (tests pass their own instead of patching delays)."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from omnirecon_contract.timeutil import epoch_ms, iso, parse_ts, utcnow

__all__ = ["Clock", "REAL_CLOCK", "RealClock", "epoch_ms", "iso", "parse_ts", "utcnow"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time (UTC) and real waits."""

    def now(self) -> datetime:
        return utcnow()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


REAL_CLOCK = RealClock()
