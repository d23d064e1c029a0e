"""The trigger chain (world.md, "What omnirecon writes"): from the platforms' change notifications in the ledger
inbox, and targeted reads where a target does not notify (Walmart quantity changes above zero), correlate each
change at a source with when (and whether) each downstream system followed it.

Per pair of systems and kind (a hop): latency p50/p95/max, the mechanism inferred from the latencies (a
near-constant delay is an event; delays spread up to a period are a poll of that period), changes seen /
followed / missed, state (ok, slow, broken, unknown), since, diagnosis and exposure. A change not followed within
`propagation_sla_seconds` is a detection (detections.csv) and a `trigger_gap` finding.

Which pairs are hops is not read from configuration: the ERP is the inventory of record, so every observable
channel is expected to follow the ERP's inventory, and the ERP to follow every channel's orders and each channel
its ERP fulfilments; a channel-to-channel hop is mapped once changes are seen flowing between two channels that
the ERP did not start, and stays mapped (the ledger's hop history).
"""
from __future__ import annotations

import json
import logging
import math
import statistics
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Iterable

from omnirecon.adapters import all_adapters, channels, get_adapter
from omnirecon.model.change import Change
from omnirecon.model.values import Action, Check, Diagnosis, Severity
from omnirecon.report.exports import detection_row
from omnirecon.timeutil import iso, parse_ts, utcnow

log = logging.getLogger(__name__)

NOTIFY_RESOLUTION_S = 1.0              # the platforms' timestamps are to the second
MIN_CHANGES = 3                        # fewer followed or missed changes: the hop's state is unknown
OWN_SALE_S = 2.0                       # a channel's count moving this close to its own sale is that sale
DISCOVER_AFTER = 2                     # channel-only changes seen relayed (value carried) before a channel->channel hop is mapped
HOP_KINDS = ("inventory", "orders", "status")
EVENT_SHARE = 0.85                     # this share of a hop's delays in one or two tight groups: an event (lag, noise)


# -- notifications -> changes ----------------------------------------------------------------------------------
def changes_from(source: str, topic: str, body: str | bytes | dict, occurred_at=None, *,
                 item_skus: dict | None = None, erp_sku: Callable[[str, str], str] | None = None) -> list[Change]:
    """A stored notification as changes, as the source's adapter reads it (none for a topic the chain does not
    use). `item_skus` maps Shopify inventory item ids to SKUs; `erp_sku(channel_sku, channel)` resolves aliases.
    A timestamp missing from the body falls back to when the notification says it happened."""
    doc = body if isinstance(body, dict) else json.loads(body)
    occurred = parse_ts(occurred_at) if occurred_at else None

    def when(*values):
        for v in values:
            try:
                t = parse_ts(v)
            except (TypeError, ValueError):
                t = None
            if t is not None:
                return t
        return occurred

    found = get_adapter(source).notification_changes(topic, doc, when, erp_sku=erp_sku or (lambda sku, ch: sku),
                                                     item_skus=item_skus)
    return [c for c in found if c.at is not None]


def silent_kinds() -> set[tuple[str, str]]:
    """(system, kind) pairs no notification reports (followed through reads of the target instead)."""
    return {(a.system, kind) for a in all_adapters() for kind in a.silent_kinds}


# -- statistics --------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def infer_mechanism(latencies: list[float], resolution_s: float = NOTIFY_RESOLUTION_S,
                    carried_at: list[datetime] | None = None) -> tuple[str, float | None]:
    """(event | poll | unknown, poll period in seconds). An event carries each change after a near-constant delay
    (5th to 95th percentile within the measuring resolution; with ten delays or more, EVENT_SHARE of them in one
    or two tight groups is enough: a lagging spell is a second constant delay, not a spread); a poll carries it at its next wake, so delays spread evenly from ~0 up to the
    period: first estimated as twice the median delay (robust to a dropped change waiting several periods), then
    refined by the spacing of the distinct instants the hop carried at (its wakes, multiples of the period)."""
    if len(latencies) < MIN_CHANGES:
        return "unknown", None
    med = statistics.median(latencies)
    band = max(2 * resolution_s + 0.5, 0.25 * med)
    lo, hi = percentile(latencies, 0.05), percentile(latencies, 0.95)
    if hi - lo <= band or (len(latencies) >= 10 and _tight_clusters_share(latencies, band) >= EVENT_SHARE):
        return "event", None
    period = max(2 * med, resolution_s)
    if carried_at:
        step = max(resolution_s, 0.001)
        wakes: list[float] = []
        for t in sorted(c.timestamp() for c in carried_at):
            if not wakes or t - wakes[-1] > 2 * step:     # one wake carries several changes
                wakes.append(t)
        near = [b - a for a, b in zip(wakes, wakes[1:]) if 0.6 * period <= b - a <= 1.6 * period]
        if len(near) >= 2:
            period = statistics.median(near)
    return "poll", round(period, 1)


def _tight_clusters_share(latencies: list[float], band: float) -> float:
    """The share of the delays in the (at most) two largest groups no wider than `band` (sorted delays split
    where consecutive ones are more than `band` apart). A poll's delays spread evenly: one wide group."""
    vals = sorted(latencies)
    groups = [[vals[0]]]
    for v in vals[1:]:
        if v - groups[-1][-1] > band:
            groups.append([v])
        else:
            groups[-1].append(v)
    tight = sorted((len(g) for g in groups if g[-1] - g[0] <= band), reverse=True)[:2]
    return sum(tight) / len(vals)


# -- the map -----------------------------------------------------------------------------------------------------
@dataclass
class Follow:
    change: Change
    followed_at: datetime | None = None
    observed: object = None           # the target's value when it followed (inventory)
    expected: object = None           # what the source implies for the target
    moot: bool = False                # nothing to follow: the target already shows what the source came back to
    delta: int = 0                    # how much the change moved what the target should show
    wrong: object = None              # the target moved after the change, but to this value, not the implied one
    superseded: bool = False          # followed by the value of a later change, never by its own
    corrected: bool = False           # the target showed the implied value only after a wrong one (another writer,
                                      # omnirecon's push): the gap closed, but not by this hop, nor with its delay

    @property
    def latency(self) -> float | None:
        return None if self.followed_at is None else max(0.0, (self.followed_at - self.change.at).total_seconds())


@dataclass
class Detection:
    hop: str
    kind: str
    key: str
    changed_at: datetime
    detected_at: datetime
    action: str
    expected: object = None
    observed: object = None
    corrected_at: datetime | None = None
    diagnosis: str = Diagnosis.UNKNOWN
    stored: bool = False

    @property
    def sku(self) -> str | None:
        return self.key if self.kind == "inventory" else None

    @property
    def order_id(self) -> str | None:
        return None if self.kind == "inventory" else self.key

    def row(self) -> dict:
        """A detections.csv row."""
        return detection_row(self.hop, self.sku, self.order_id, self.changed_at, self.detected_at, self.action,
                             self.corrected_at)


@dataclass
class Hop:
    src: str
    dst: str
    kind: str
    follows: list[Follow] = field(default_factory=list)
    resolution_s: float = NOTIFY_RESOLUTION_S

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"


class ChainMonitor:
    """Learns the trigger chain and detects its gaps. Feed it notifications (`ingest`, or `tick` with a ledger:
    it reads the inbox by cursor, leaving notifications to the live reconcile), call `tick(now)` every few
    seconds; `reader(system, keys) -> {key: value}` reads a silent target through its hook."""

    def __init__(self, settings, *, ledger=None, reader: Callable | None = None, readable: Iterable[str] = (),
                 item_skus: dict | None = None, resolution_s: float = 5.0, window_from: datetime | None = None,
                 keep_s: float = 6 * 3600, erp_levels: dict | None = None, channel_levels: dict | None = None):
        self.settings, self.ledger, self.reader = settings, ledger, reader
        self.keep_s = float(keep_s)                      # changes older than this are forgotten (the ledger keeps the history)
        self.erp_levels = dict(erp_levels or {})         # {(ERP SKU, location): available} before the first change
        # {(channel, ERP SKU, channel location): quantity} before the first change: what a channel showed, so a change
        # it already showed needs no follow, and a per-location notification (Shopify) adds up to the SKU's total
        self.channel_levels = dict(channel_levels or {})
        self._totals: dict[str, tuple] = {}              # channel -> (count, last row, per-SKU totals, rows)
        self.readable = set(readable)                    # silent targets the reader can read
        self.sla = float(settings.get("propagation_sla_seconds", 60))
        self.item_skus = dict(item_skus or {})
        self.resolution_s = float(resolution_s)
        self.window_from = window_from
        self.changes: dict[tuple[str, str], list[Change]] = defaultdict(list)   # (system, kind) -> by time
        self.notifying: set[tuple[str, str]] = set()       # (system, kind) seen notifying
        self.last_read: dict[tuple[str, str], tuple[object, datetime]] = {}
        self.detections: dict[tuple, Detection] = {}        # (hop, kind, key, changed_at) -> detection
        self.open_gaps: dict[tuple, tuple] = {}             # (hop, kind, key) -> detection key of the open gap
        self.known: dict[tuple[str, str, str], dict] = {}   # hops mapped before (ledger history)
        self.cursor = 0
        self._safety_cache: dict[tuple[str, str], int] = {}
        self._latest: dict[str, tuple] = {}              # system -> (rows, last row, {key: latest value})
        self.now: datetime | None = None
        self.hops: list[Hop] = []
        self.channels = channels()
        self.silent = silent_kinds()
        if ledger is not None:
            from omnirecon.ledger import queries
            with ledger.session() as s:
                self.known = {k: {"state": w.state, "since": parse_ts(w.since)}
                              for k, w in queries.latest_hop_windows(s).items()}
                if not self.item_skus:
                    self.item_skus = queries.shopify_item_skus(s)
                if not self.erp_levels:
                    self.erp_levels = queries.erp_levels(s)
                if not self.channel_levels:      # at the locations the ERP's implied value counts (mapped)
                    mapped = {c: self._mapped_channel_locations(c) for c in self.channels}
                    self.channel_levels = {k: v for k, v in queries.channel_levels(s, self.channels, self._erp_sku).items()
                                           if mapped[k[0]] is None or k[2] in mapped[k[0]]}
        self._start_levels: dict[tuple[str, str], dict] = defaultdict(dict)  # (channel, ERP SKU) -> {location: qty}
        for (system, key, loc), v in self.channel_levels.items():
            self._start_levels[(system, key)][loc] = int(v)

    # -- input ---------------------------------------------------------------------------------------------
    def _erp_sku(self, sku: str, channel: str) -> str:
        return self.settings.erp_sku_for(sku, channel) if hasattr(self.settings, "erp_sku_for") else sku

    def observe(self, change: Change) -> None:
        rows = self.changes[(change.system, change.kind)]
        i = len(rows)
        while i and rows[i - 1].at > change.at:     # notifications arrive out of order: keep time order
            i -= 1
        rows.insert(i, change)
        if change.via == "notification":
            self.notifying.add((change.system, change.kind))
        if self.window_from is None or change.at < self.window_from:
            self.window_from = change.at

    def ingest(self, notifications) -> int:
        """Notifications (ledger rows or objects with source, topic, body, occurred_at) -> changes observed."""
        n = 0
        for note in notifications:
            try:
                found = changes_from(note.source, note.topic, note.body, note.occurred_at,
                                     item_skus=self.item_skus, erp_sku=self._erp_sku)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                log.warning("notification %s/%s not usable for the chain: %s", note.source, note.topic, e)
                continue
            for c in found:
                self.observe(c)
                n += 1
        return n

    def ingest_inbox(self) -> int:
        from omnirecon.ledger import queries
        total = 0
        while True:
            with self.ledger.session() as s:
                rows = queries.notifications_after(s, self.cursor, limit=5000)
                if not rows:
                    return total
                self.cursor = rows[-1].id
                total += self.ingest(rows)

    # -- the ERP's implied values ----------------------------------------------------------------------------
    def _mapped_erp_locations(self, channel: str) -> set[str] | None:
        try:
            key = get_adapter(channel).location_key
            return {l["erp"] for l in self.settings.mapped_locations(key) if l.get("erp")}
        except (AttributeError, KeyError):
            return None

    def _mapped_channel_locations(self, channel: str) -> set[str] | None:
        try:
            key = get_adapter(channel).location_key
            return {str(l[key]) for l in self.settings.mapped_locations(key) if l.get(key) is not None}
        except (AttributeError, KeyError):
            return None

    def _erp_sources(self, target: str) -> list[Follow]:
        """ERP inventory changes that change what `target` should show: at a location mapped to it, moving
        max(0, sum over its mapped locations - safety stock) (other locations from the latest ERP snapshot)."""
        mapped = self._mapped_erp_locations(target)
        avail: dict[str, dict[str, int]] = defaultdict(dict)
        for (sku, loc), v in self.erp_levels.items():
            if mapped is None or loc in mapped:
                avail[sku][loc] = v
        last: dict[str, int | None] = {}
        out = []
        for c in self.changes.get(("erp", "inventory"), []):
            if mapped is not None and c.location not in mapped:
                continue
            if c.key not in last:
                last[c.key] = (max(0, sum(avail[c.key].values()) - self._safety(c.key, target))
                               if avail.get(c.key) else None)
            avail[c.key][c.location] = c.value or 0
            expected = max(0, sum(avail[c.key].values()) - self._safety(c.key, target))
            if last[c.key] == expected:
                continue                                 # nothing for the target to follow
            delta = expected - last[c.key] if last[c.key] is not None else 0
            last[c.key] = expected
            out.append(Follow(c, expected=expected, delta=delta))
        return out

    # -- reads of silent targets ----------------------------------------------------------------------------------
    def _read_silent(self, now: datetime) -> None:
        if self.reader is None:
            return
        for system, kind in self.silent:
            if system not in self.readable or not self.changes.get(("erp", "inventory")):
                continue
            hop = Hop("erp", system, "inventory", self._erp_sources(system), self.resolution_s)
            targets = self._targets(system, "inventory", keep_own=True)
            self._follow(hop, targets)
            self._settle(hop)
            horizon = now - timedelta(hours=1)
            latest = {f.change.key: f for f in hop.follows if f.change.at >= horizon}
            never = datetime.min.replace(tzinfo=now.tzinfo)
            keys = [k for k, f in latest.items() if f.followed_at is None and not f.moot
                    and (now - self.last_read.get((system, k), (None, never))[1]).total_seconds()
                    >= self.resolution_s * 0.999]
            if not keys:
                continue
            try:
                values = self.reader(system, keys)
            except Exception as e:  # noqa: BLE001 - a failed read leaves the change pending; logged
                log.warning("could not read %s for the trigger chain: %s", system, e)
                continue
            for key, value in values.items():
                prev = self.last_read.get((system, key))
                self.last_read[(system, key)] = (value, now)
                if prev is not None and value != prev[0]:     # a first read is the baseline: when it changed is unknown
                    self.observe(Change(system, kind, key, now, value, via="read",
                                        before=prev[0] if prev else None, since=prev[1] if prev else None))

    # -- correlation ----------------------------------------------------------------------------------------------
    def _inventory(self, system: str) -> list[Change]:
        """A system's inventory changes in time order; a channel's as the SKU's total over its locations (the
        contract formula and a channel->channel relay both speak of the SKU's total; Shopify notifies one location
        at a time): each location's latest value, from `channel_levels` until it is first notified. A read is
        already the SKU's total."""
        rows = self.changes.get((system, "inventory"), [])
        if system not in self.channels:
            return rows
        cached = self._totals.get(system)
        if cached is not None and cached[3] is rows and cached[0] == len(rows) and (not rows or cached[1] is rows[-1]):
            return cached[2]
        levels: dict[str, dict] = {}
        out = []
        for c in rows:
            if c.location is None or not isinstance(c.value, int):
                out.append(c)
                continue
            if c.key not in levels:
                levels[c.key] = dict(self._start_levels.get((system, c.key), {}))
            levels[c.key][c.location] = c.value
            out.append(c if len(levels[c.key]) == 1 else replace(c, value=sum(levels[c.key].values())))
        self._totals[system] = (len(rows), rows[-1] if rows else None, out, rows)
        return out

    def _baseline(self, system: str, key: str) -> int | None:
        """What a channel showed of a SKU before its first change (`channel_levels`), None: not known."""
        start = self._start_levels.get((system, key))
        return sum(start.values()) if start else None

    def _own_sales(self, system: str) -> dict[str, list[tuple[datetime, int]]]:
        sales = defaultdict(list)
        for c in self.changes.get((system, "order"), []):
            for i, sku in enumerate(c.skus):
                sales[sku].append((c.at, c.units[i] if i < len(c.units) else 0))
        return sales

    def _targets(self, system: str, kind: str, channel: str | None = None, keep_own: bool = False
                 ) -> dict[str, list[Change]]:
        """The target's changes by key, in time order; unless `keep_own`, not the moves of a channel's count by
        its own sales (`_own_move`)."""
        by_key: dict[str, list[Change]] = defaultdict(list)
        if kind == "inventory":
            sales = self._own_sales(system)
            for c in self._inventory(system):
                rows = by_key[c.key]
                if keep_own or not self._own_move(c, rows[-1] if rows else None, sales.get(c.key, ())):
                    rows.append(c)
        else:
            for c in self.changes.get((system, "order" if kind == "orders" else "status"), []):
                if channel is None or c.channel in (None, channel):
                    by_key[c.key].append(c)
        return by_key

    @staticmethod
    def _own_move(c: Change, previous: Change | None, own_sales) -> bool:
        """Is this move of a channel's count its own sale? Notified: at a sale's moment, down by the units sold;
        read: down by exactly the units sold since the previous read."""
        if c.via == "read" and c.since is not None and isinstance(c.before, int):
            sold = sum(u for t, u in own_sales if c.since < t <= c.at)
            return bool(sold) and c.value == c.before - sold
        near = [u for t, u in own_sales if abs((c.at - t).total_seconds()) <= OWN_SALE_S]
        if not near:
            return False
        before = previous.value if previous is not None else None
        return not isinstance(before, int) or not isinstance(c.value, int) or before - c.value in (*near, sum(near))

    def _follow(self, hop: "Hop", targets: dict[str, list[Change]], slack_s: float = 0.0) -> None:
        """Each source change is followed by the target's first change of that key after it that carries it. For
        inventory that is a change to the value the source implies (less the target's own sales since, not yet
        in the source), or to the value of a later source change (`superseded`: a poll carries the state at its
        wake; an event hop that skipped this change carried only the later one); a change to any other value is
        a wrong value carried (`wrong`: another location's count, the count without the safety stock). A change
        seen by a read may have happened anywhere since the previous read, so it too must show the value."""
        times = {k: [c.at for c in rows] for k, rows in targets.items()}
        slack = timedelta(seconds=slack_s)
        before: dict[str, object] = {}                  # the key's previous expected value
        by_key: dict[str, list[Follow]] = defaultdict(list)
        for f in hop.follows:
            by_key[f.change.key].append(f)
        position = {id(f): i for rows in by_key.values() for i, f in enumerate(rows)}
        sales = self._own_sales(hop.dst) if hop.kind == "inventory" else {}
        horizon = timedelta(seconds=3 * self.sla)      # a value carried later than this is another change's
        for f in hop.follows:
            rows = targets.get(f.change.key, [])
            prev, before[f.change.key] = before.get(f.change.key), f.expected
            for i in range(bisect_left(times.get(f.change.key, []), f.change.at - slack), len(rows)):
                c = rows[i]
                if prev is not None and c.value == prev != f.expected:
                    continue                            # still carrying the change before this one
                if hop.kind == "inventory" and isinstance(f.expected, int) and isinstance(c.value, int) \
                        and not self._carries(f, c, sales.get(f.change.key, ())):
                    if c.at > f.change.at + horizon:
                        break
                    if self._own_move(c, rows[i - 1] if i else None, sales.get(f.change.key, ())):
                        continue                        # the channel's own sale, not the hop
                    later = by_key[f.change.key][position[id(f)] + 1:]
                    if any(g.expected == c.value and g.change.at <= c.at for g in later):
                        f.followed_at, f.observed, f.superseded, f.wrong = c.at, c.value, True, None
                        break
                    f.wrong = c.value                   # the latest wrong value (another writer may come first)
                    continue
                f.followed_at, f.observed, f.corrected, f.wrong = c.at, c.value, f.wrong is not None, None
                break

    def _carries(self, f: Follow, c: Change, own_sales) -> bool:
        """Does the target's change show what the source change implies (its own sales since then, not yet in
        the source, taken off)?"""
        if c.value == f.expected:
            return True
        sold = sum(u for t, u in own_sales if f.change.at - timedelta(seconds=self.sla) <= t <= c.at)
        return f.expected - sold <= c.value < f.expected

    def _settle(self, hop: "Hop") -> None:
        """A change is moot when the target already shows what the source implies at that moment, or when the
        source comes back, within the SLA and before the target moved, to a value the target shows (a poll that
        then writes the same value changes nothing and notifies nothing). A moot change needs no follow."""
        by_key: dict[str, list[Follow]] = defaultdict(list)
        for f in hop.follows:
            by_key[f.change.key].append(f)
        shown_rows: dict[str, list[Change]] = defaultdict(list)      # every move of the target, its own sales too
        for c in self._inventory(hop.dst):
            shown_rows[c.key].append(c)
        for key, follows in by_key.items():
            rows = shown_rows.get(key, [])
            times = [c.at for c in rows]
            read = self.last_read.get((hop.dst, key))
            baseline = self._baseline(hop.dst, key)

            def shown(t):
                i = bisect_left(times, t + timedelta(microseconds=1)) - 1
                return rows[i].value if i >= 0 else (read[0] if read and read[1] <= t else None)

            nxt: Follow | None = None
            for f in reversed(follows):
                value = shown(f.change.at)
                if value is None and nxt is None and read and not any(t > f.change.at for t in times):
                    value = read[0]            # not seen moving since: what a read shows now is what it showed then
                if value is None and not any(t <= f.change.at for t in times):
                    value = baseline           # not seen moving before: what it showed at the start
                if value is not None and value == f.expected:
                    f.moot = True
                elif (nxt is not None and nxt.moot and (nxt.change.at - f.change.at).total_seconds() <= self.sla
                      and not any(f.change.at < t <= nxt.change.at for t in times)):
                    f.moot = True
                if f.moot:
                    f.followed_at = f.observed = None
                nxt = f

    def _observable(self, system: str, kind: str) -> bool:
        if (system, kind) in self.silent:
            return system in self.readable and self.reader is not None
        return (system, kind) in self.notifying or any(s == system for s, _ in self.notifying)

    def _channel_pairs(self) -> list[tuple[str, str]]:
        """Channel->channel inventory hops: known from history, or seen carrying changes the ERP did not start."""
        out = [(s, d) for (s, d, k) in self.known if k == "inventory" and s in self.channels and d in self.channels]
        erp_times = defaultdict(list)
        for c in self.changes.get(("erp", "inventory"), []):
            erp_times[c.key].append(c.at)
        cache: dict[str, tuple[dict, dict]] = {}
        for src in self.channels:
            for dst in self.channels:
                if src == dst or (src, dst) in out or not self._observable(dst, "inventory"):
                    continue
                if dst not in cache:
                    targets = self._targets(dst, "inventory")
                    cache[dst] = targets, {k: [c.at for c in rows] for k, rows in targets.items()}
                targets, times = cache[dst]
                seen = 0
                for c in self._inventory(src):
                    i = bisect_left(times.get(c.key, []), c.at)
                    if i >= len(times.get(c.key, [])):
                        continue
                    first = targets[c.key][i]
                    erp = erp_times.get(c.key, [])
                    j = bisect_left(erp, c.at - timedelta(seconds=self.sla * 2))
                    if j < len(erp) and erp[j] <= first.at:
                        continue                           # the ERP may have started both
                    safety = self._safety(c.key, dst)
                    if first.value in (max(0, (c.value or 0) - safety), c.value):   # a relay writes what it read
                        seen += 1
                        if seen >= DISCOVER_AFTER:
                            break
                if seen >= DISCOVER_AFTER:
                    out.append((src, dst))
        return out

    def _build(self) -> list[Hop]:
        hops: list[Hop] = []
        erp_seen = any(s == "erp" for s, _ in self.notifying)
        for dst in self.channels:
            known = ("erp", dst, "inventory") in self.known and (dst, "inventory") not in self.silent   # quiet now
            if erp_seen and (self._observable(dst, "inventory") or known):
                hop = Hop("erp", dst, "inventory", self._erp_sources(dst),
                          self.resolution_s if (dst, "inventory") in self.silent else NOTIFY_RESOLUTION_S)
                targets = self._targets(dst, "inventory", keep_own=True)
                self._follow(hop, targets)
                self._settle(hop)
                hops.append(hop)
        for src, dst in self._channel_pairs():
            last: dict[str, object] = {}
            follows = []
            for c in self._inventory(src):
                if last.get(c.key, object()) == c.value:
                    continue
                last[c.key] = c.value
                safety = self._safety(c.key, dst)
                follows.append(Follow(c, expected=max(0, (c.value or 0) - safety)))
            hop = Hop(src, dst, "inventory", follows,
                      self.resolution_s if (dst, "inventory") in self.silent else NOTIFY_RESOLUTION_S)
            targets = self._targets(dst, "inventory", keep_own=True)
            self._follow(hop, targets)
            self._settle(hop)
            hops.append(hop)
        if erp_seen:    # one user-event deployment notifies the ERP's items and sales orders alike: heard at all,
            for src in self.channels:       # it would have said an order was recorded (not waiting for a first one)
                orders = self.changes.get((src, "order"), [])
                if orders:
                    hop = Hop(src, "erp", "orders", [Follow(c, expected="recorded") for c in orders])
                    self._follow(hop, self._targets("erp", "orders", src), slack_s=NOTIFY_RESOLUTION_S)
                    hops.append(hop)
        for dst in self.channels:
            shipped = [c for c in self.changes.get(("erp", "status"), []) if c.channel == dst]
            if shipped and (dst, "status") in self.notifying:
                hop = Hop("erp", dst, "status", [Follow(c, expected="shipped") for c in shipped])
                self._follow(hop, self._targets(dst, "status"), slack_s=NOTIFY_RESOLUTION_S)
                hops.append(hop)
        return hops

    # -- one step -------------------------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> list[Detection]:
        """Take in new notifications, read silent targets, re-learn the chain, detect gaps -> new detections."""
        now = now or utcnow()
        self.now = now
        if self.ledger is not None:
            self.ingest_inbox()
        self._forget(now - timedelta(seconds=self.keep_s))
        self._read_silent(now)
        self.hops = self._build()
        new = []
        for hop in self.hops:
            action = Action.PUSH if hop.kind == "inventory" and hop.dst in self.channels else Action.ALERT
            for f in hop.follows:
                late = f.followed_at is None and (now - f.change.at).total_seconds() > self.sla
                gap_key = (hop.name, hop.kind, f.change.key)
                open_key = self.open_gaps.get(gap_key)
                if open_key is not None:
                    d = self.detections[open_key]
                    if f.moot and f.change.at >= d.changed_at:      # the source came back to the target's value
                        d.corrected_at, d.stored = f.change.at, False
                        del self.open_gaps[gap_key]
                    elif f.followed_at is not None and f.change.at >= d.changed_at and d.corrected_at is None:
                        d.corrected_at, d.observed = f.followed_at, f.observed
                        d.stored = False
                        del self.open_gaps[gap_key]
                    elif late:
                        d.expected = f.expected                # a later change while the gap is open joins it
                    continue
                if late and not f.moot:
                    key = (hop.name, hop.kind, f.change.key, f.change.at)
                    if key in self.detections:
                        continue
                    d = Detection(hop.name, hop.kind, f.change.key, f.change.at, now, action, f.expected,
                                  self._last_value(hop.dst, hop.kind, f.change.key))
                    self.detections[key] = d
                    self.open_gaps[gap_key] = key
                    new.append(d)
        diagnosed: dict[tuple[str, str], str] = {}                  # once per hop, not per detection
        for d in new:
            if (d.hop, d.kind) not in diagnosed:
                hop = next(h for h in self.hops if h.name == d.hop and h.kind == d.kind)
                diagnosed[(d.hop, d.kind)] = self._diagnose(hop)
            d.diagnosis = diagnosed[(d.hop, d.kind)]
        return new

    def _forget(self, cutoff: datetime) -> None:
        if self.window_from is None or self.window_from >= cutoff:
            return
        for k, rows in self.changes.items():
            self.changes[k] = rows[bisect_left([c.at for c in rows], cutoff):]
        self.detections = {k: d for k, d in self.detections.items()
                           if d.corrected_at is None or d.corrected_at >= cutoff or not d.stored}
        self.window_from = cutoff

    def _last_value(self, system: str, kind: str, key: str):
        if kind != "inventory":
            return None
        rows = self._inventory(system)
        cached = self._latest.get(system)
        if cached is None or cached[0] != len(rows) or (rows and cached[1] is not rows[-1]):
            latest = {c.key: c.value for c in rows}       # time order: the last one wins
            cached = self._latest[system] = (len(rows), rows[-1] if rows else None, latest)
        if key in cached[2]:
            return cached[2][key]
        read = self.last_read.get((system, key))
        return read[0] if read else self._baseline(system, key)

    # -- the hop's summary ------------------------------------------------------------------------------------
    def _missed(self, hop: Hop, f: Follow, wait_s: float) -> bool:
        return f.followed_at is None and (self.now - f.change.at).total_seconds() > wait_s

    def _wait_s(self, hop: Hop, mechanism: str, period: float | None, latencies: list[float]) -> float:
        """How long a change may stay unfollowed before it counts as missed: past the SLA and past what this
        hop's own mechanism explains (a poll's period, an event's longest delay, with the resolution)."""
        if mechanism == "poll" and period:
            own = 1.5 * period
        else:
            own = 2 * max(latencies, default=0.0)
        return max(self.sla, own + 2 * hop.resolution_s)

    def _diagnose(self, hop: Hop) -> str:
        """The layer (domain.md) from the pattern of what the hop did not carry."""
        if hop.kind in ("orders", "status"):
            return Diagnosis.L3_CONNECTOR                  # the connector: suspended, filtered, credentials
        follows = [f for f in hop.follows if not f.moot]
        _, _, skipped = self._mechanism(hop)
        late = lambda f: self.now is None or (self.now - f.change.at).total_seconds() > self.sla
        # what it did not carry: a change still within the SLA is no evidence yet
        unfollowed = [f for f in follows if (f.followed_at is None and late(f)) or id(f) in skipped]
        if not unfollowed:
            return Diagnosis.L3_CONNECTOR                  # carried, late: a slow or stale sync
        if hop.src != "erp":
            return get_adapter(hop.dst).listing_diagnosis
        if self._reads_other_location(hop, unfollowed):
            return Diagnosis.LOCATION_MAPPING              # the channel shows another ERP location's count
        if self._shows_without_safety_stock(hop, unfollowed):
            return get_adapter(hop.dst).listing_diagnosis  # the feed's buffer rule: safety stock not held back
        alone, not_alone = self._carried_alone(follows)     # a skipped change was reflected after the next one
        not_alone = [f for f in not_alone if self.now is None or (self.now - f.change.at).total_seconds() > self.sla]
        first_miss = min(f.change.at for f in not_alone) if not_alone else None
        carried_after = [f for f in alone if first_miss is not None and f.change.at > first_miss]
        if carried_after:
            net = self._net_moves(follows)
            for size in (lambda f: abs(f.delta), lambda f: net[id(f)]):   # an event's own change; a poll's net one
                if max(size(f) for f in not_alone) < min(size(f) for f in carried_after):
                    return Diagnosis.L4_ERP_CONFIG         # a quantity-delta threshold: small changes never fire
            return Diagnosis.L3_CONNECTOR                  # intermittent: the connector drops changes
        # stopped: if another channel followed the same ERP changes, the break is this hop's connector;
        # if none did, the ERP's own trigger never fired
        missed = {(f.change.key, f.change.at) for f in unfollowed}
        others = [h for h in self.hops if h.dst != hop.dst and h.src == "erp" and h.kind == "inventory"]
        if any(f.followed_at is not None and (f.change.key, f.change.at) in missed for h in others for f in h.follows):
            return Diagnosis.L3_CONNECTOR
        return Diagnosis.L4_ERP_CONFIG if others else Diagnosis.UNKNOWN

    @staticmethod
    def _carried_alone(follows: list[Follow]) -> tuple[list[Follow], list[Follow]]:
        """(changes the target followed before the source's next change of that key, the others): an event hop
        carries every change on its own; a change the target only reflected once a later one was carried (or
        never) was not carried itself."""
        nxt: dict[str, datetime] = {}
        alone, other = [], []
        for f in reversed(follows):
            limit = nxt.get(f.change.key)
            (alone if f.followed_at is not None and (limit is None or f.followed_at <= limit) else other).append(f)
            nxt[f.change.key] = f.change.at
        return alone[::-1], other[::-1]

    @staticmethod
    def _net_moves(follows: list[Follow]) -> dict[int, int]:
        """{id(follow): how far the source had moved what the target should show since the target last carried
        a value of that key}: a quantity-delta threshold compares this net change, not each change's own."""
        carried: dict[str, int] = {}
        out = {}
        for f in follows:
            key = f.change.key
            base = carried.get(key, f.expected - f.delta if isinstance(f.expected, int) else 0)
            out[id(f)] = abs((f.expected or 0) - (base or 0))
            if f.followed_at is not None:
                carried[key] = f.expected
        return out

    def _shows_without_safety_stock(self, hop: Hop, unfollowed: list[Follow]) -> bool:
        """For most keys it did not carry and that show something else than before, the target shows now what the
        source implies now plus the safety stock (the feed does not hold the safety stock back). A key the target
        has not moved for since (a stale value: a paused flow beside the rule) is no evidence either way."""
        latest = {f.change.key: f for f in hop.follows}                 # time order: the newest change per key
        moved = {f.change.key for f in unfollowed if f.wrong is not None}
        hits = against = 0
        for key in {f.change.key for f in unfollowed}:
            f, safety = latest[key], self._safety(key, hop.dst)
            shown = self._last_value(hop.dst, "inventory", key)
            if safety and isinstance(shown, int) and isinstance(f.expected, int) and shown == f.expected + safety:
                hits += 1
            elif key in moved:
                against += 1
        return bool(hits) and hits >= against

    def _reads_other_location(self, hop: Hop, unfollowed: list[Follow]) -> bool:
        """The target's count equals what another (unmapped) ERP location would give it, for most changes it
        did not follow."""
        mapped = self._mapped_erp_locations(hop.dst) or set()
        levels = self._erp_levels_now()
        unmapped = {loc for _, loc in levels} - mapped
        elsewhere: dict[str, list[int]] = defaultdict(list)     # SKU -> available at each unmapped location
        for f in unfollowed:                                     # (0 where the location holds none of it)
            elsewhere.setdefault(f.change.key, [levels.get((f.change.key, loc), 0) for loc in unmapped])
        hits = 0
        for f in unfollowed:
            shown = f.wrong if f.wrong is not None else self._last_value(hop.dst, "inventory", f.change.key)
            if not isinstance(shown, int) or shown == f.expected:
                continue
            safety = self._safety(f.change.key, hop.dst)
            if any(max(0, avail - safety) == shown for avail in elsewhere.get(f.change.key, ())):
                hits += 1
        return hits and hits * 2 >= len(unfollowed)

    def _erp_levels_now(self) -> dict[tuple[str, str], int]:
        levels = dict(self.erp_levels)
        for c in self.changes.get(("erp", "inventory"), []):
            levels[(c.key, c.location)] = c.value or 0
        return levels

    def _safety(self, sku: str, channel: str) -> int:
        key = (sku, channel)
        if key not in self._safety_cache:
            try:
                self._safety_cache[key] = int(self.settings.safety_stock(sku, channel))
            except (AttributeError, KeyError, TypeError):
                self._safety_cache[key] = 0
        return self._safety_cache[key]

    def _mechanism(self, hop: Hop) -> tuple[str, float | None, set[int]]:
        """(mechanism, poll period, ids of the changes it skipped), from the changes it carried on their own. A
        poll carries the state at its wake, so a change superseded before the wake was followed; an event hop
        carries each change after a near-constant delay, so one it only reflected through a later change, long
        after that delay, was skipped (a quantity threshold, a lost event)."""
        exact = [f for f in hop.follows if f.followed_at is not None and not f.superseded and not f.moot
                 and not f.corrected]
        mechanism, period = infer_mechanism([f.latency for f in exact], hop.resolution_s, [f.followed_at for f in exact])
        skipped: set[int] = set()
        if mechanism == "event":
            bound = max(f.latency for f in exact) + 2 * hop.resolution_s
            skipped = {id(f) for f in hop.follows if f.superseded and not f.moot and f.latency > bound}
        return mechanism, period, skipped

    def _summary(self, hop: Hop) -> dict:
        now = self.now
        hop = Hop(hop.src, hop.dst, hop.kind, [f for f in hop.follows if not f.moot], hop.resolution_s)
        mechanism, period, skipped = self._mechanism(hop)
        lat = [f.latency for f in hop.follows if f.followed_at is not None and id(f) not in skipped
               and not f.corrected and (not f.superseded or mechanism == "poll")]
        wait_s = self._wait_s(hop, mechanism, period, lat)
        missed = [f for f in hop.follows if self._missed(hop, f, wait_s) or id(f) in skipped]
        p95 = percentile(lat, 0.95)
        if sum(f.followed_at is not None for f in hop.follows) + len(missed) < MIN_CHANGES:
            state = "unknown"
        elif missed:
            state = "broken"
        elif p95 is not None and p95 > self.sla:
            state = "slow"
        else:
            state = "ok"
        if state == "broken":
            last_ok = max((f.change.at for f in hop.follows if f.followed_at is not None and not f.corrected),
                          default=None)
            after = [f.change.at for f in missed if last_ok is None or f.change.at > last_ok]
            since = min(after or [f.change.at for f in missed])
        elif state == "slow":
            since = min(f.change.at for f in hop.follows if f.latency is not None and f.latency > self.sla)
        else:
            since = min((f.change.at for f in hop.follows), default=self.window_from)
        prev = self.known.get((hop.src, hop.dst, hop.kind))
        if prev and prev["state"] == state and prev["since"] is not None:
            since = min(since, prev["since"]) if since else prev["since"]
        return {"from": hop.src, "to": hop.dst, "kind": hop.kind, "mechanism": mechanism,
                "poll_interval_s": period,
                "latency_s": {"p50": _r(percentile(lat, 0.5)), "p95": _r(p95), "max": _r(max(lat) if lat else None)},
                "resolution_s": hop.resolution_s,
                "changes_seen": len(hop.follows),
                "followed": sum(f.followed_at is not None and id(f) not in skipped for f in hop.follows),
                "missed": len(missed),
                "state": state, "since": iso(since) if since else None,
                "diagnosis": None if state in ("ok", "unknown") else str(self._diagnose(hop)),
                "exposure": self._exposure(hop, now)}

    def _exposure(self, hop: Hop, now: datetime) -> dict:
        """sku_minutes: time beyond the SLA during which the target had not followed (per key, overlaps counted
        once); units_at_risk: for keys still not followed, how far the target shows more than the source implies."""
        by_key: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        open_keys: dict[str, Follow] = {}
        for f in hop.follows:
            start = f.change.at + timedelta(seconds=self.sla)
            end = f.followed_at or now
            if end > start:
                by_key[f.change.key].append((start, end))
            if f.followed_at is None and now > start:
                open_keys[f.change.key] = f
        minutes = 0.0
        for spans in by_key.values():
            spans.sort()
            cur_s, cur_e = spans[0]
            for s, e in spans[1:]:
                if s > cur_e:
                    minutes += (cur_e - cur_s).total_seconds() / 60
                    cur_s, cur_e = s, e
                else:
                    cur_e = max(cur_e, e)
            minutes += (cur_e - cur_s).total_seconds() / 60
        units = 0
        if hop.kind == "inventory":
            for key, f in open_keys.items():
                seen = self._last_value(hop.dst, "inventory", key)
                if isinstance(seen, int) and isinstance(f.expected, int):
                    units += max(0, seen - f.expected)
        return {"sku_minutes": round(minutes, 2), "units_at_risk": units}

    def chain(self) -> dict:
        """trigger_chain.json."""
        now = self.now or utcnow()
        return {"generated_at": iso(now), "window": {"from": iso(self.window_from or now), "to": iso(now)},
                "hops": [self._summary(h) for h in sorted(self.hops, key=lambda h: (h.src, h.dst, h.kind))]}

    # -- findings and the ledger ---------------------------------------------------------------------------------
    def findings(self, run_id: str, since: datetime | None = None) -> list[dict]:
        """trigger_gap findings (m.Finding column dicts) for the gaps detected since a moment (default: all)."""
        from omnirecon.checks.findings import fingerprint
        states = {(h["from"], h["to"], h["kind"]): h for h in self.chain()["hops"]}
        out = []
        for d in self.detections.values():
            if since is not None and d.detected_at < since:
                continue
            src, dst = d.hop.split("->")
            hop = states.get((src, dst, d.kind), {})
            state = hop.get("state", "unknown")
            quantity = isinstance(d.expected, int) and isinstance(d.observed, int)
            what = f"SKU {d.key}" if d.kind == "inventory" else f"order {d.key}"
            followed = (f"it followed {round((d.corrected_at - d.changed_at).total_seconds(), 1)} s after the change"
                        if d.corrected_at else "it has not followed yet")
            detail = (f"{d.hop}: {src} changed {what} at {iso(d.changed_at)}"
                      + (f" ({src} implies {d.expected} on {dst}, {dst} shows {d.observed})" if quantity else "")
                      + f"; {dst} had not followed {round((d.detected_at - d.changed_at).total_seconds(), 1)} s later"
                      f" (propagation SLA {self.sla:g} s), {followed}; hop {state}"
                      + (f" since {hop['since']}" if hop.get("since") else "")
                      + (f", {hop['mechanism']}" if hop.get("mechanism") not in (None, "unknown") else "")
                      + (f" every ~{hop['poll_interval_s']:g} s" if hop.get("poll_interval_s") else "") + ".")
            location = None
            out.append({"run_id": run_id,
                        "fingerprint": fingerprint(Check.TRIGGER_GAP, dst, d.sku, location,
                                                   f"{d.order_id or ''}|{d.hop}|{iso(d.changed_at)}"),
                        "check": Check.TRIGGER_GAP, "severity": Severity.CRITICAL if state == "broken" else Severity.WARNING,
                        "channel": dst, "sku": d.sku, "location": location, "order_id": d.order_id,
                        "expected": None if d.expected is None else str(d.expected),
                        "observed": None if d.observed is None else str(d.observed),
                        "delta": d.observed - d.expected if quantity else None,
                        "diagnosis": d.diagnosis, "action": d.action, "detail": detail,
                        "evidence": {"hop": d.hop, "kind": d.kind, "changed_at": iso(d.changed_at),
                                     "detected_at": iso(d.detected_at),
                                     "corrected_at": iso(d.corrected_at) if d.corrected_at else None,
                                     "hop_state": hop}})
        return out

    def save(self, run_id: str | None = None, persist_findings: bool = True) -> None:
        """Write this window's hop summaries (history), the detections (new, or corrected since), and for a run
        the trigger_gap findings."""
        from sqlalchemy import select
        from omnirecon.ledger import models as m
        doc = self.chain()
        now = self.now or utcnow()
        with self.ledger.session() as s:
            for h in doc["hops"]:
                s.add(m.HopWindow(run_id=run_id, from_system=h["from"], to_system=h["to"], kind=h["kind"],
                                  window_from=parse_ts(doc["window"]["from"]), window_to=now,
                                  mechanism=h["mechanism"], poll_interval_s=h["poll_interval_s"],
                                  resolution_s=h["resolution_s"], latency_p50_s=h["latency_s"]["p50"],
                                  latency_p95_s=h["latency_s"]["p95"], latency_max_s=h["latency_s"]["max"],
                                  changes_seen=h["changes_seen"], followed=h["followed"], missed=h["missed"],
                                  state=h["state"], since=parse_ts(h["since"]), diagnosis=h["diagnosis"],
                                  exposure=h["exposure"]))
            for d in self.detections.values():
                if d.stored:
                    continue
                row = s.scalars(select(m.TriggerDetection).where(
                    m.TriggerDetection.hop == d.hop, m.TriggerDetection.kind == d.kind,
                    m.TriggerDetection.key == d.key, m.TriggerDetection.changed_at == d.changed_at)).first()
                if row is None:
                    s.add(m.TriggerDetection(run_id=run_id, hop=d.hop, kind=d.kind, key=d.key, sku=d.sku,
                                             order_id=d.order_id, changed_at=d.changed_at, detected_at=d.detected_at,
                                             action=d.action, expected=_str(d.expected), observed=_str(d.observed),
                                             corrected_at=d.corrected_at))
                else:
                    row.corrected_at, row.observed = d.corrected_at, _str(d.observed)
                d.stored = True
        self.known.update({(h["from"], h["to"], h["kind"]): {"state": h["state"], "since": parse_ts(h["since"])}
                           for h in doc["hops"]})
        if run_id is not None and persist_findings:
            from omnirecon.checks.findings import persist
            persist(self.ledger, run_id, self.findings(run_id), now, lambda st: st.check == Check.TRIGGER_GAP,
                    shard="live", checks=(Check.TRIGGER_GAP,))


def _r(v):
    return None if v is None else round(float(v), 1)


def _str(v):
    return None if v is None else str(v)
