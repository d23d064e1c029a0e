"""Atomic snapshots: hook -> normalise -> ledger, complete or absent (never partial).

`take_snapshot` pulls one (system, kind), normalises it and lands it with `Ledger.land_snapshot` in one
transaction. Any failure after the hook's own retries is recorded with `Ledger.fail_snapshot` and raised
as `SnapshotFailed`; no row of a failed pull is ever visible.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import select

from omnirecon.adapters import SystemAdapter, get_adapter
from omnirecon.errors import SnapshotFailed
from omnirecon.ledger import models as m
from omnirecon.model.canonical import SNAPSHOT_KINDS
from omnirecon.model.normalize import high_water
from omnirecon.timeutil import parse_ts, utcnow

log = logging.getLogger(__name__)
DEFAULT_ORDERS_LOOKBACK = timedelta(days=1)


def _ensure_run(ledger, run_id: str) -> None:
    with ledger.session() as s:
        exists = s.scalar(select(m.Run.id).where(m.Run.id == run_id))
    if not exists:
        ledger.begin_run(run_id, "snapshot")


def default_window(ledger, system: str, window_start, window_end) -> tuple[datetime, datetime]:
    """[start, end): end defaults to now; start to where the last complete orders snapshot stopped."""
    end = parse_ts(window_end) if window_end is not None else utcnow()
    if window_start is not None:
        start = parse_ts(window_start)
    else:
        last = ledger.latest_snapshot(system, "orders")
        start = parse_ts(last.window_end) if last is not None and last.window_end else end - DEFAULT_ORDERS_LOOKBACK
    if start >= end:
        raise ValueError(f"orders window start {start.isoformat()} is not before its end {end.isoformat()}")
    return start, end


def orders_landed_until(ledger, system: str, start: datetime, end: datetime) -> datetime | None:
    """How far from `start` the complete orders snapshots of `system` already cover [start, end) without a gap
    (None: not at all). A window pulled before is not pulled again; only its remainder is."""
    start, end = parse_ts(start), parse_ts(end)
    with ledger.session() as s:
        rows = s.execute(select(m.Snapshot.window_start, m.Snapshot.window_end).where(
            m.Snapshot.system == system, m.Snapshot.kind == "orders", m.Snapshot.status == "complete",
            m.Snapshot.window_start <= end, m.Snapshot.window_end > start)).all()
    reached = start
    for ws, we in sorted((parse_ts(ws), parse_ts(we)) for ws, we in rows):
        if ws <= reached < we:
            reached = we
    return reached if reached > start else None


def orders_gap_before(ledger, system: str, start: datetime, max_gap: timedelta) -> datetime | None:
    """The end of the newest complete orders window of `system` when it stops short of `start` by at most
    `max_gap` (e.g. the 2 minutes SP-API would not serve yet): the next window should start there."""
    start = parse_ts(start)
    with ledger.session() as s:
        ends = s.scalars(select(m.Snapshot.window_end).where(
            m.Snapshot.system == system, m.Snapshot.kind == "orders", m.Snapshot.status == "complete",
            m.Snapshot.window_end > start - max_gap, m.Snapshot.window_end <= start)).all()
    newest = max((parse_ts(e) for e in ends), default=None)
    return newest if newest is not None and newest < start else None


class _Pull:
    """One fetch shared by the snapshots that need it (inventory + listings), done at most once."""

    def __init__(self, fetch: Callable[[], Any]):
        self._fetch, self._done, self._value, self._error = fetch, False, None, None
        self.started_at = self.fetched_at = None
        self.duration_s = 0.0

    def get(self):
        if not self._done:
            self._done = True
            self.started_at = utcnow()
            t0 = time.monotonic()
            try:
                self._value = self._fetch()
            except Exception as e:
                self._error = e
            self.duration_s = time.monotonic() - t0
            self.fetched_at = utcnow()
        if self._error is not None:
            raise self._error
        return self._value


def _land(adapter: SystemAdapter, kind: str, pull: _Pull, *, ledger, run_id: str, settings, hook,
          window: tuple | None = None, counters: tuple[int, int] = (0, 0)) -> m.Snapshot:
    system = adapter.system
    t0 = time.monotonic()
    pulled_here = not pull._done
    window_start, window_end = window or (None, None)

    def stats(**more) -> dict:
        own = time.monotonic() - t0 - (pull.duration_s if pulled_here else 0.0)   # normalise + land
        out = {"api_calls": hook.api_calls - counters[0], "retries": hook.retries - counters[1],
               "duration_s": round(pull.duration_s + own, 3),
               "window_start": window_start, "window_end": window_end,
               "fetched_at": pull.fetched_at}
        if pull.started_at is not None:
            out["started_at"] = pull.started_at
        out.update(more)
        return out

    try:
        raw = pull.get()
        if kind == "orders":
            raw, window_end = raw
        records, quarantined = adapter.normalize(kind, raw)
        if kind == "orders" and adapter.inclusive_orders_end:   # consecutive windows never share an order:
            # the API's window includes its end, in whole seconds; rows are kept to [start, end)
            lo, hi = parse_ts(window_start), parse_ts(window_end)
            records = [r for r in records if r.updated_at is None or lo <= r.updated_at < hi]
        detail = {"method": raw.get("method")} if isinstance(raw, dict) and raw.get("method") else None
        snap = ledger.land_snapshot(
            run_id=run_id, system=system, kind=kind, records=records, quarantined=quarantined,
            stats=stats(source_high_water=high_water(records), detail=detail),
            max_quarantine_fraction=float(settings.runtime["max_quarantine_fraction"]))
    except Exception as e:
        reason = f"{system} {kind} snapshot failed: {_describe(e, hook)}"
        log.error("%s", reason)
        try:
            ledger.fail_snapshot(run_id=run_id, system=system, kind=kind, error=reason, stats=stats())
        except Exception as ledger_error:   # still raise the original failure
            log.error("could not record the failed snapshot: %s", type(ledger_error).__name__)
        raise SnapshotFailed(reason) from None
    log.info("%s %s snapshot %s: %s, %d rows, %d quarantined, %d calls, %d retries",
             system, kind, snap.id, snap.status, snap.rows_valid, snap.rows_quarantined,
             snap.api_calls, snap.retries)
    return snap


def _describe(e: Exception, hook) -> str:
    text = f"{type(e).__name__}: {e}"
    core = getattr(hook, "_core", None)
    return core.redact(text) if core is not None else text


def _prepare(system: str, kind: str | None, *, ledger, run_id: str, hook, settings):
    adapter = get_adapter(system)
    if kind is not None and kind not in SNAPSHOT_KINDS:
        raise ValueError(f"unknown snapshot kind {kind!r} (expected one of {', '.join(SNAPSHOT_KINDS)})")
    _ensure_run(ledger, run_id)
    hook = adapter.apply_account_settings(hook or adapter.hook(), settings)
    previous = hook.on_event

    def on_event(**fields):
        ledger.api_event(run_id=run_id, **fields)
        if previous is not None:
            previous(**fields)
    hook.on_event = on_event
    return adapter, hook, previous


def take_snapshot(system: str, kind: str, *, ledger, run_id: str, settings, window_start=None,
                  window_end=None, hook=None) -> m.Snapshot:
    """Pull one system's data of one kind and land it atomically (see the module docstring)."""
    adapter, hook, previous = _prepare(system, kind, ledger=ledger, run_id=run_id, hook=hook, settings=settings)
    try:
        counters = (hook.api_calls, hook.retries)
        if kind == "orders":
            window = default_window(ledger, system, window_start, window_end)
            pull = _Pull(lambda: adapter.fetch_orders(hook, *window))
            return _land(adapter, kind, pull, ledger=ledger, run_id=run_id, settings=settings, hook=hook,
                         window=window, counters=counters)
        pull = _Pull(lambda: adapter.fetch_catalog(hook))
        return _land(adapter, kind, pull, ledger=ledger, run_id=run_id, settings=settings, hook=hook,
                     counters=counters)
    finally:
        hook.on_event = previous


def snapshot_system(system: str, *, ledger, run_id: str, settings, kinds=SNAPSHOT_KINDS, window_start=None,
                    window_end=None, hook=None) -> dict[str, m.Snapshot | SnapshotFailed]:
    """Every kind of one system. Inventory and listings come from one pull (e.g. Amazon's listings report
    gives quantities and listing state) and land as two snapshots. Returns {kind: Snapshot or the
    SnapshotFailed}; a failed kind does not stop the others."""
    adapter, hook, previous = _prepare(system, None, ledger=ledger, run_id=run_id, hook=hook, settings=settings)
    out: dict = {}
    try:
        catalog = _Pull(lambda: adapter.fetch_catalog(hook))
        catalog_counters = (hook.api_calls, hook.retries)
        first_catalog_kind = True
        for kind in kinds:
            if kind not in SNAPSHOT_KINDS:
                raise ValueError(f"unknown snapshot kind {kind!r}")
            counters = (hook.api_calls, hook.retries)
            try:
                if kind == "orders":
                    window = default_window(ledger, system, window_start, window_end)
                    pull = _Pull(lambda w=window: adapter.fetch_orders(hook, *w))
                    out[kind] = _land(adapter, kind, pull, ledger=ledger, run_id=run_id, settings=settings,
                                      hook=hook, window=window, counters=counters)
                else:
                    # the shared pull's calls are counted on the first catalog snapshot only
                    c = catalog_counters if first_catalog_kind else (hook.api_calls, hook.retries)
                    first_catalog_kind = False
                    out[kind] = _land(adapter, kind, catalog, ledger=ledger, run_id=run_id, settings=settings,
                                      hook=hook, counters=c)
            except SnapshotFailed as e:
                out[kind] = e
    finally:
        hook.on_event = previous
    return out
