"""The world engine: one scheduler loop over a priority queue of due actions on the sandbox clock.

Scenario events and seeded Poisson demand change the platforms through their own state-mutation methods;
every change arrives on the sandbox's ChangeBus, and each hop of the retailer's integration reacts to the
changes of its source system on its mechanism (event: latency + jitter after the change; poll: at its wakes,
everything changed since the last successful wake), through its defects, writing the target platform the way
any API write does. Deterministic under a ManualClock: seeded RNGs, one loop, FIFO among equal due times."""
from __future__ import annotations

import collections
import fnmatch
import heapq
import itertools
import logging
import random
import threading
import zlib

from omnirecon_contract.timeutil import offset_seconds, parse_duration
from omnirecon_sandbox.changes import (INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED, Change,
                                       ChangeBus)
from omnirecon_sandbox.world.model import Catalogue

log = logging.getLogger(__name__)

EVENT_TYPE = {ORDER_CREATED: "creation", ORDER_CANCELLED: "cancellation", ORDER_FULFILLED: "fulfillment"}
AUTH_ERROR = "401 Unauthorized: invalid_grant (the connector's refresh token has expired)"


def ts(clock, t: float) -> str:
    """A world instant with millisecond precision (the hop log measures latencies)."""
    from datetime import timedelta
    return (clock.started_at + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Defect:
    def __init__(self, doc: dict, as_of, hop_id: str):
        self.kind = doc["kind"]
        self.doc = doc
        self.start = offset_seconds(doc["from"], as_of) if "from" in doc else float("-inf")
        self.end = offset_seconds(doc["until"], as_of) if "until" in doc else float("inf")
        self.rng = random.Random(doc.get("seed", zlib.crc32(hop_id.encode())))

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


class Hop:
    def __init__(self, doc: dict, defects: list, as_of, seed: int):
        self.id, self.src, self.dst = doc["id"], doc["from"], doc["to"]
        self.kind, self.mechanism = doc["kind"], doc["mechanism"]
        self.latency = parse_duration(doc.get("latency", 0))
        self.jitter = parse_duration(doc.get("jitter", 0))
        self.every = parse_duration(doc.get("every", 0))
        self.phase = parse_duration(doc.get("phase", 0))
        self.defects = [Defect(d, as_of, self.id) for d in defects]
        self.rng = random.Random(seed ^ zlib.crc32(self.id.encode()))
        self.dirty: dict = {}          # poll: key -> [first change time, net delta, event types]

    def defect(self, kind: str, t: float) -> Defect | None:
        return next((d for d in self.defects if d.kind == kind and d.active(t)), None)


class World:
    def __init__(self, sandbox):
        self.sb = sandbox
        self.clock = sandbox.world_clock
        self.as_of = sandbox.scenario.as_of
        data = sandbox.data
        self.cat = Catalogue(sandbox)
        self.lock = threading.RLock()
        self._queue: list = []
        self._seq = itertools.count()
        self._inbox: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hop_log: list[dict] = []
        self.writes: list[dict] = []
        self.event_log: list[dict] = []
        self.oversold: dict = {}                 # (channel, sku) -> [orders, units]
        self.pending: collections.Counter = collections.Counter()   # ERP sku -> units accepted, not yet in the ERP
        self.pending_orders: dict = {}           # channel order id -> [(ERP sku, units)]
        self.demand_stats = {"arrivals": 0, "accepted": 0, "rejected": 0}
        self.actions = 0
        self.origin = 0.0       # clock second at which the world started: scenario offsets count from it
        self._due = 0.0         # due time of the action running now (periodic actions stay on their grid)
        self.lateness: collections.deque | None = None   # bench: deque of (run time - due time) per action
        integration = data.get("integration") or {}
        demand = data.get("demand")
        seed = int((demand or {}).get("seed", 0))
        by_hop = collections.defaultdict(list)
        for d in integration.get("defects", []):
            by_hop[d["hop"]].append(d)
        self.hops = [Hop(h, by_hop[h["id"]], self.as_of, seed) for h in integration.get("hops", [])]
        self._by_source = collections.defaultdict(list)
        for hop in self.hops:
            self._by_source[hop.src].append(hop)
            if hop.mechanism == "poll":
                self._at(hop.phase, self._wake_poll, hop)
        for i, ev in enumerate(data.get("events", [])):
            self._at(max(0.0, offset_seconds(ev["at"], self.as_of)), self._apply_event, i, ev)
        if demand:
            self._init_demand(demand)
        self._unsubscribe = sandbox.changes.subscribe(self._receive)

    def _receive(self, change: Change) -> None:
        """Bus subscriber (any thread): queue the change, wake the loop."""
        self._inbox.append(change)
        self._wake.set()

    # -- scheduler ---------------------------------------------------------------------------------------------
    def _at(self, due: float, fn, *args) -> None:
        heapq.heappush(self._queue, (due, next(self._seq), fn, args))
        self._wake.set()

    def now(self) -> float:
        return self.clock.monotonic()

    def _drain(self) -> None:
        while self._inbox:
            self._observe(self._inbox.popleft())

    def _step(self, until: float, manual: bool) -> None:
        """Run every action due by `until`, in due order; under a manual clock the clock moves to each one."""
        with self.lock:
            self._drain()
            while self._queue and self._queue[0][0] <= until:
                due, _, fn, args = heapq.heappop(self._queue)
                if manual and due > self.clock.monotonic():
                    self.clock.advance(due - self.clock.monotonic())
                self.actions += 1
                self._due = due
                if self.lateness is not None:
                    self.lateness.append(self.clock.monotonic() - due)
                try:
                    fn(*args)
                except Exception:
                    log.exception("world action %s%r failed", getattr(fn, "__name__", fn), args)
                self._drain()

    def advance(self, seconds: float) -> None:
        """Manual clock: move the world forward by `seconds`, running everything that falls due."""
        target = self.clock.monotonic() + seconds
        self._step(target, manual=True)
        if target > self.clock.monotonic():
            self.clock.advance(target - self.clock.monotonic())
        self._step(target, manual=True)

    def settle(self) -> None:
        """Process changes already published (API writes made between advances) without moving time."""
        self._step(self.clock.monotonic(), manual=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._step(self.clock.monotonic(), manual=False)
            with self.lock:
                nxt = self._queue[0][0] if self._queue else None
            wait = 0.5 if nxt is None else min(0.5, max(0.0, nxt - self.clock.monotonic()))
            if self._inbox:
                wait = 0.0
            self._wake.wait(wait)
            self._wake.clear()

    def start(self) -> None:
        if self.clock.manual or self._thread:
            return
        with self.lock:   # the world's time starts now, not when the scenario was built
            self.origin = self.clock.monotonic()
            self._queue = [(due + self.origin, seq, fn, args) for due, seq, fn, args in self._queue]
            heapq.heapify(self._queue)
        self._thread = threading.Thread(target=self._loop, name="sandbox-world", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    # -- events and demand ---------------------------------------------------------------------------------------
    def _apply_event(self, index: int, ev: dict) -> None:
        system, kind = ev["system"], ev["kind"]
        target = self.sb.systems[system]
        with ChangeBus.acting_as("api" if kind == "set" else "world"):
            if kind == "adjust":
                ok = target.adjust(ev["sku"], ev["location"], on_hand=int(ev["delta"]))
            elif kind == "receive":
                ok = target.adjust(ev["sku"], ev["location"], on_hand=int(ev["quantity"]))
            elif kind == "ship":
                ok = target.fulfil(ev["channel_order"])
            elif kind == "order":
                ok = self.place_order(system, ev["sku"], int(ev["quantity"])) is not None
            elif kind == "cancel":
                ok = target.cancel_order(ev["order"])
            else:   # set: a manual edit on the channel
                ok = self.cat.set_channel(system, ev["sku"], int(ev["quantity"]), ev.get("location"))
        self.event_log.append({"at": ts(self.clock, self.now()), "event": index, "system": system, "kind": kind,
                               "outcome": "applied" if ok else "rejected"})

    def _init_demand(self, demand: dict) -> None:
        self.demand_rng = random.Random(int(demand.get("seed", 0)))
        self.demand_rate = float(demand["orders_per_minute"]) / 60.0
        weights = {c: float(w) for c, w in demand["channels"].items() if float(w) > 0 and c in self.sb.systems}
        self.demand_channels, self.demand_weights = list(weights), list(itertools.accumulate(weights.values()))
        glob = demand.get("skus", "*")
        self.demand_skus = sorted(s for s in self.cat.erp_skus() if fnmatch.fnmatchcase(s, glob))
        self.demand_max = int(demand.get("max_quantity", 1))
        if self.demand_channels and self.demand_skus:
            self._at(self.demand_rng.expovariate(self.demand_rate), self._arrival)

    def _arrival(self) -> None:
        rng = self.demand_rng
        pick = rng.random() * self.demand_weights[-1]
        channel = self.demand_channels[next(i for i, w in enumerate(self.demand_weights) if pick < w)]
        sku = self.demand_skus[rng.randrange(len(self.demand_skus))]
        qty = rng.randint(1, self.demand_max)
        self.demand_stats["arrivals"] += 1
        self.demand_stats["last_arrival_s"] = round(self._due - self.origin, 3)
        with ChangeBus.acting_as("world"):
            placed = self.place_order(channel, self.cat.channel_sku(channel, sku), qty)
        self.demand_stats["accepted" if placed else "rejected"] += 1
        self._at(self._due + rng.expovariate(self.demand_rate), self._arrival)

    def place_order(self, channel: str, channel_sku: str, quantity: int) -> str | None:
        """A sale on a channel, counted as oversold when the ERP could not cover it (world.md, Oversells)."""
        system = self.sb.systems[channel]
        if not system.accepts(channel_sku, quantity):
            return None
        lines = self.cat.erp_lines(channel, [(channel_sku, quantity)])
        locations = self.cat.mapped_erp_locations(channel)
        short = any(sum(self.cat.erp_available(sku, loc) for loc in locations) - self.pending[sku] < units
                    for sku, units in lines)
        order_id = system.create_order(channel_sku, quantity)
        if order_id is None:
            return None
        if short:
            key = (channel, self.cat.erp_sku(channel, channel_sku))
            count = self.oversold.setdefault(key, [0, 0])
            count[0] += 1
            count[1] += quantity
        for sku, units in lines:
            self.pending[sku] += units
        self.pending_orders[order_id] = lines
        return order_id

    def _reached_erp(self, order_id: str) -> None:
        for sku, units in self.pending_orders.pop(order_id, []):
            self.pending[sku] -= units

    # -- changes -> hops ---------------------------------------------------------------------------------------------
    def _observe(self, ch: Change) -> None:
        if ch.kind == INVENTORY and ch.system != "erp" and ch.by in ("integration", "api"):
            self.writes.append({"at": ch.at_iso, "system": ch.system, "sku": ch.sku, "location": ch.location,
                                "by": ch.by, "value": ch.value})
        if ch.system == "erp" and ch.kind == ORDER_CREATED:
            self._reached_erp(ch.order)
        elif ch.kind == ORDER_CANCELLED and ch.system != "erp":
            self._reached_erp(ch.order)      # a cancelled sale no longer needs the ERP's stock
        for hop in self._by_source.get(ch.system, ()):
            for key, delta, etype in self._keys(hop, ch):
                if hop.mechanism == "event":
                    self._schedule_event(hop, key, delta, etype, ch.at)
                else:
                    entry = hop.dirty.get(key)
                    if entry is None:
                        hop.dirty[key] = [ch.at, delta, {etype}]
                    else:
                        entry[1] += delta
                        entry[2].add(etype)

    def _keys(self, hop: Hop, ch: Change):
        """(key, delta, event type) for each thing this change asks the hop to carry."""
        if hop.kind == "inventory":
            if ch.kind != INVENTORY:
                return ()
            delta = int(ch.detail.get("delta", ch.detail.get("on_hand", 0) - ch.detail.get("committed", 0)))
            sku = ch.sku if hop.src == "erp" else self.cat.erp_sku(hop.src, ch.sku)
            return [(k, delta, None) for k in self.cat.affected(sku)]
        if ch.kind not in EVENT_TYPE:
            return ()
        if hop.kind == "orders":
            return [(ch.order, 0, EVENT_TYPE[ch.kind])]
        if ch.kind == ORDER_FULFILLED and ch.detail.get("channel") == hop.dst:   # status
            return [(ch.order, 0, "fulfillment")]
        return ()

    def _schedule_event(self, hop: Hop, key, delta: int, etype, changed_at: float) -> None:
        delay = hop.latency
        if hop.jitter:
            delay += hop.rng.uniform(-hop.jitter, hop.jitter)
        lag = self._defect(hop, "lag", changed_at)
        if lag:
            delay += parse_duration(lag.doc["extra"])
        snapshot = self._values(hop, key, changed_at) if hop.kind == "inventory" else None
        self._at(changed_at + max(0.0, delay), self._attempt, hop, key, delta, {etype}, changed_at, snapshot)

    def _wake_poll(self, hop: Hop) -> None:
        """A poll connector's wake: every key changed since the last successful wake, at its current value
        (min_delta compares the net change over that period)."""
        t = self.now()
        self._at(self._due + hop.every, self._wake_poll, hop)
        if self._defect(hop, "expired_credentials", t):
            self._log(hop, t, None, None, "auth_error", error=AUTH_ERROR)
            return                               # not a successful wake: the changes wait
        if self._defect(hop, "suspended", t):
            for key, (changed, _, _) in hop.dirty.items():
                self._log(hop, t, key, None, "suspended", changed_at=changed)
            return
        dirty, hop.dirty = hop.dirty, {}
        for key, (changed, delta, etypes) in dirty.items():
            self._attempt(hop, key, delta, etypes, changed, None, polled=True)

    def _attempt(self, hop: Hop, key, delta: int, etypes: set, changed_at: float, snapshot, polled=False) -> None:
        t = self.now()
        if not polled:
            if self._defect(hop, "expired_credentials", t):
                return self._log(hop, t, key, None, "auth_error", changed_at=changed_at, error=AUTH_ERROR)
            if self._defect(hop, "suspended", t):
                return self._log(hop, t, key, None, "suspended", changed_at=changed_at)
        filt = self._defect(hop, "event_filter", t)
        if filt and filt.doc["fires_on"] not in etypes:
            return self._log(hop, t, key, None, "filtered", changed_at=changed_at)
        md = self._defect(hop, "min_delta", t)
        if md and abs(delta) < int(md.doc["units"]):
            return self._log(hop, t, key, None, "below_min_delta", changed_at=changed_at)
        drop = self._defect(hop, "drop", t)
        if drop and drop.rng.random() < float(drop.doc["fraction"]):
            return self._log(hop, t, key, None, "dropped", changed_at=changed_at)
        with ChangeBus.acting_as("integration"):
            if hop.kind == "inventory":
                for loc, value in (snapshot if snapshot is not None else self._values(hop, key, t)):
                    self.cat.set_channel(hop.dst, self.cat.channel_sku(hop.dst, key), value, loc)
                    self._log(hop, t, key, None, "carried", value=value, location=loc, changed_at=changed_at)
            elif hop.kind == "orders":
                value = self.cat.sync_order(hop.src, key)
                self._log(hop, t, None, key, "carried", value=value, changed_at=changed_at)
            else:
                self.cat.ship_channel_order(hop.dst, key)
                self._log(hop, t, None, key, "carried", changed_at=changed_at)

    def _values(self, hop: Hop, erp_sku: str, t: float) -> list:
        """[(target location, quantity)] the hop writes for one ERP SKU, its value defects applied."""
        wrong = self._defect(hop, "wrong_location", t)
        safety = not self._defect(hop, "ignores_safety_stock", t)
        if hop.src == "erp":
            return self.cat.expected(hop.dst, erp_sku, reads=wrong.doc["reads"] if wrong else None, safety=safety)
        return self.cat.relayed(hop.src, hop.dst, erp_sku, safety=safety)

    def _defect(self, hop: Hop, kind: str, t: float) -> Defect | None:
        """The hop's defect of that kind active at clock second t (from/until count from the world's start)."""
        return hop.defect(kind, t - self.origin)

    def _log(self, hop: Hop, t: float, key, order, outcome: str, value=None, location=None, changed_at=None,
             error=None) -> None:
        sku = key if hop.kind == "inventory" else None
        order = order if order is not None or hop.kind == "inventory" else key
        self.hop_log.append({"at": ts(self.clock, t), "hop": hop.id, "sku": sku, "order": order, "value": value,
                             "location": location, "outcome": outcome, "error": error,
                             "changed_at": None if changed_at is None else ts(self.clock, changed_at),
                             "delay_s": None if changed_at is None else round(t - changed_at, 3)})

    # -- dump ----------------------------------------------------------------------------------------------------------
    def oversells(self) -> list[dict]:
        return [{"channel": c, "sku": s, "orders": n, "units": u} for (c, s), (n, u) in sorted(self.oversold.items())]

    def dump(self) -> dict:
        with self.lock:
            self._drain()
            notifications = getattr(self.sb, "notifications", None)
            return {"clock": {"started_at": ts(self.clock, self.origin), "dumped_at": ts(self.clock, self.now())},
                    "hop_log": [dict(e) for e in self.hop_log],
                    "oversells": self.oversells(),
                    "notifications": notifications.stats() if notifications is not None else [],
                    "writes": [dict(w) for w in self.writes],
                    "events": [dict(e) for e in self.event_log],
                    "demand": dict(self.demand_stats)}
