"""HTTP delivery of notifications: a due-time queue, a few sender threads, real timeouts, retries with backoff.

Due times run on the sandbox clock (documented seconds, scaled by its time scale; a ManualClock drives them);
the connect / total timeouts are real seconds (they bound real sockets)."""
from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    system: str
    topic: str
    subscription: str
    url: str
    body: bytes
    headers: dict                      # fixed headers (the signer adds per-attempt ones)
    signer: object = None              # fn(delivery, attempt) -> extra headers, or None
    attempt: int = 0
    created: float = 0.0               # sandbox-clock time the change was published
    delivered_at: float | None = None
    duplicate: bool = False
    meta: dict = field(default_factory=dict)


class Outbox:
    """Sends each Delivery when due; `policy(system)` says max attempts, backoff and failure handling."""

    def __init__(self, clock, on_result, connect_timeout: float = 1.0, total_timeout: float = 5.0, senders: int = 4):
        self.clock = clock
        self.on_result = on_result                # fn(delivery, ok: bool, status|None, error|None, final: bool)
        self.connect_timeout, self.total_timeout = connect_timeout, total_timeout
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, name=f"sandbox-notify-{i}", daemon=True)
                         for i in range(senders)]
        self._started = False
        self.inflight = 0

    def start(self) -> None:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._started:
            for t in self._threads:
                t.join(timeout=self.total_timeout + 1)

    def submit(self, delivery, delay_s: float = 0.0) -> None:
        """Queue `delivery` (a Delivery, or a callable to run) to go out after `delay_s` documented seconds."""
        due = self.clock.monotonic() + self.clock.scaled(delay_s)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), delivery))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self.inflight

    def due(self) -> int:
        """Deliveries due by the clock's now (not those a delay or a backoff scheduled later), plus those in flight:
        on a ManualClock, 0 means everything this instant owes has been sent."""
        with self._cond:
            now = self.clock.monotonic()
            return sum(1 for when, _, _ in self._heap if when <= now) + self.inflight

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stopped:
                now = self.clock.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    self.inflight += 1
                    return heapq.heappop(self._heap)[2]
                self.clock.wait(self._cond, self._heap[0][0] - now if self._heap else None)
            return None

    def _run(self) -> None:
        while True:
            d = self._next()
            if d is None:
                return
            try:
                if callable(d):
                    d()
                    continue
                d.attempt += 1
                ok, status, error = self.post(d)
                self.on_result(d, ok, status, error)
            except Exception:  # a sandbox bug must not kill the sender
                log.exception("notification delivery failed unexpectedly")
            finally:
                with self._cond:
                    self.inflight -= 1

    def post(self, d: Delivery) -> tuple[bool, int | None, str | None]:
        """One HTTP POST: `connect_timeout` to connect, `total_timeout` in all; only a 2xx counts."""
        parts = urlsplit(d.url)
        headers = dict(d.headers)
        if d.signer:
            headers.update(d.signer(d))
        headers["Content-Length"] = str(len(d.body))
        start = time.monotonic()
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=self.connect_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(max(0.01, self.total_timeout - (time.monotonic() - start)))
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=d.body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if time.monotonic() - start > self.total_timeout:
                return False, resp.status, "timeout"
            return 200 <= resp.status < 300, resp.status, None
        except (socket.timeout, TimeoutError):
            return False, None, "timeout"
        except OSError as e:
            return False, None, type(e).__name__
        finally:
            conn.close()
