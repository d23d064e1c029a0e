"""The platforms' own change notifications (shared/contracts/world.md, "notifications").

One hub subscribes to the sandbox's change bus; each platform turns a change into its own notifications for
the subscriptions that exist, on its real wire format. Only platforms listed in the scenario's `notifications`
block notify at all; its `defects` (stop_after, duplicate, reorder) apply per platform."""
from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass

from omnirecon_contract.timeutil import parse_ts
from omnirecon_sandbox.notify.delivery import Delivery, Outbox

SYSTEMS = ("shopify", "amazon", "walmart", "erp")
DEFECT_KINDS = ("stop_after", "duplicate", "reorder")
LATENCY_SAMPLES = 100_000


@dataclass
class _Defect:
    kind: str
    options: dict
    rng: random.Random
    start: object = None            # datetime bounds (from / until), None: always
    end: object = None
    count: int = 0


class Notifications:
    def __init__(self, sandbox):
        from omnirecon_sandbox.notify.amazon import AmazonNotifications
        from omnirecon_sandbox.notify.netsuite import NetSuiteDeployment
        from omnirecon_sandbox.notify.shopify import ShopifyWebhooks
        from omnirecon_sandbox.notify.walmart import WalmartWebhooks
        self.sb = sandbox
        cfg = sandbox.data.get("notifications") or {}
        self.enabled = {s for s in SYSTEMS if s in cfg}
        self.defects: dict[str, list[_Defect]] = {}
        as_of = sandbox.clock.started_at
        for d in cfg.get("defects") or []:
            opts = {k: v for k, v in d.items() if k not in ("system", "kind", "from", "until")}
            bounds = tuple(parse_ts(d[k], as_of) if d.get(k) is not None else None for k in ("from", "until"))
            self.defects.setdefault(d["system"], []).append(
                _Defect(d["kind"], opts, random.Random(d.get("seed", 0)), *bounds))
        self._lock = threading.Lock()
        self._counters: dict[tuple, dict] = {}
        self._latencies: dict[str, list[float]] = {}
        opts = sandbox.options
        self.outbox = Outbox(sandbox.clock, self._result, opts.notify_connect_timeout, opts.notify_timeout)
        kinds = {"shopify": ShopifyWebhooks, "amazon": AmazonNotifications, "walmart": WalmartWebhooks,
                 "erp": NetSuiteDeployment}
        self.platforms = {n: cls(self, sandbox.systems[n]) for n, cls in kinds.items() if n in sandbox.systems}
        # a scenario without notifications adds no subscriber: writes publish nothing (bus inactive), as before
        self._unsubscribe = sandbox.changes.subscribe(self.on_change) if self.enabled else None

    def start(self) -> None:
        if self.enabled:
            self.outbox.start()

    def stop(self) -> None:
        self.outbox.stop()

    def later(self, delay_s: float, fn) -> None:
        """Run fn after `delay_s` documented seconds on the sandbox clock, where something is listening: a change
        a system applies lazily (Amazon's queued listing patches) then notifies when it happens, not when next read."""
        if self.enabled:
            self.outbox.submit(fn, delay_s)

    # -- changes in, notifications out ------------------------------------------------------------------------
    def on_change(self, change) -> None:
        platform = self.platforms.get(change.system)
        if platform is not None and change.system in self.enabled:
            platform.on_change(change, self.sb.clock.monotonic())

    def emit(self, system: str, topic: str, subscription: str, send, published: float) -> None:
        """Apply the platform's defects, then `send(delay_s, duplicate)` once (or twice, or never)."""
        delay, copies, now = 0.0, 1, self.sb.clock.now()
        for d in self.defects.get(system, ()):
            if (d.start and now < d.start) or (d.end and now >= d.end):
                continue
            with self._lock:
                if d.kind == "stop_after":
                    d.count += 1
                    if d.count > int(d.options["deliveries"]):
                        return                                  # silent: no error, no counter
                elif d.kind == "duplicate" and d.rng.random() < float(d.options["fraction"]):
                    copies = 2
                elif d.kind == "reorder":
                    delay = max(delay, d.rng.uniform(0.0, _seconds(d.options["window"])))
        for n in range(copies):
            if n:
                self.count(system, topic, subscription, duplicates=1)
            send(delay, bool(n), published)

    # -- counters (world.notifications) ---------------------------------------------------------------------------
    def count(self, system: str, topic: str, subscription: str, **inc) -> None:
        with self._lock:
            row = self._counters.setdefault((system, topic, subscription),
                                            {"delivered": 0, "failed": 0, "duplicates": 0})
            for k, v in inc.items():
                row[k] += v

    def record_latency(self, system: str, seconds: float) -> None:
        """Clock seconds from the change to its delivery (2xx answer; Amazon: queued), first copies only."""
        with self._lock:
            samples = self._latencies.setdefault(system, [])
            if len(samples) < LATENCY_SAMPLES:
                samples.append(seconds)

    def latencies(self) -> dict[str, list[float]]:
        with self._lock:
            return {s: list(v) for s, v in self._latencies.items()}

    def latency(self) -> dict:
        """p50 / p95 / max delivery latency (ms) per system and over all (bench)."""
        def summary(values):
            values = sorted(values)
            pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] * 1e3, 1)
            return {"n": len(values), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": round(values[-1] * 1e3, 1)} \
                if values else {"n": 0}
        by_system = self.latencies()
        return {"all": summary([v for vs in by_system.values() for v in vs]),
                **{s: summary(v) for s, v in sorted(by_system.items())}}

    def stats(self) -> list[dict]:
        return self.counters()

    def counters(self) -> list[dict]:
        with self._lock:
            return [{"system": s, "topic": t, "subscription": sub, **row}
                    for (s, t, sub), row in sorted(self._counters.items())]

    # -- HTTP deliveries (Shopify, Walmart, NetSuite) ---------------------------------------------------------------
    def post(self, platform, sub_id: str, topic: str, url: str, body: dict | bytes, headers: dict, signer,
             delay: float, duplicate: bool, published: float, meta: dict | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        d = Delivery(platform.system.name, topic, sub_id, url, raw, headers, signer, created=published,
                     duplicate=duplicate, meta=dict(meta or {}, platform=platform))
        self.outbox.submit(d, delay)

    def _result(self, d: Delivery, ok: bool, status, error) -> None:
        platform = d.meta["platform"]
        if ok:
            self.count(d.system, d.topic, d.subscription, delivered=1)
            if not d.duplicate:
                self.record_latency(d.system, self.sb.clock.monotonic() - d.created)
            platform.delivered(d)
            return
        self.count(d.system, d.topic, d.subscription, failed=1)
        if error == "timeout":       # the receiver may have it already: a retry is a duplicate to it
            d.meta["maybe_received"] = True
        retry_in = platform.failed(d, status, error)
        if retry_in is not None:
            self.retry(d, retry_in)

    def retry(self, d: Delivery, delay_s: float) -> None:
        """Send `d` again (re-signed) after `delay_s` documented seconds; after a timeout that is a duplicate."""
        if d.meta.get("maybe_received"):
            self.count(d.system, d.topic, d.subscription, duplicates=1)
            d.meta["maybe_received"] = False
        self.outbox.submit(d, delay_s)


def _seconds(value) -> float:
    """`5s`, `2m`, `1h` or a number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    return float(text[:-1]) * unit if unit else float(text)
