"""Token and leaky buckets on a scaled clock (time_scale 0.01 refills 100x faster, same ratios)."""
from __future__ import annotations

import threading

from omnirecon_sandbox.clock import SandboxClock as Clock


class TokenBucket:
    """`rate` tokens per (documented) second, at most `burst`; starts full."""

    def __init__(self, rate: float, burst: float, clock: Clock):
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens = float(burst)
        self.stamp = clock.monotonic()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate / self.clock.time_scale)
        self.stamp = now

    def take(self, n: float = 1.0) -> bool:
        with self.lock:
            self._refill()
            if self.tokens + 1e-9 >= n:
                self.tokens -= n
                return True
            return False

    def available(self) -> float:
        with self.lock:
            self._refill()
            return self.tokens

    def drain(self) -> None:
        with self.lock:
            self._refill()
            self.tokens = 0.0

    def seconds_until(self, n: float = 1.0) -> float:
        """Real seconds until `n` tokens are available."""
        with self.lock:
            self._refill()
            missing = max(0.0, n - self.tokens)
            return missing * self.clock.time_scale / self.rate if self.rate else float("inf")
