"""Push one batch of planned corrections through the channel hooks, then read back and verify.

Safety:
- only `planned` rows are pushed. Each API call claims its rows: a claim lock per correction (ledger/locks.py)
  held by this pusher until their new status commits, so a re-run or a concurrent duplicate of the batch waits,
  then sees `applied`/`verified` and skips them. No database transaction is open during a channel call: claim
  (a short committed transaction counting the attempt), call, record (a short transaction), so other ledger
  writers never wait on HTTP. A crash mid-call leaves the rows `planned` (the claim lock dies with the process);
  the re-run then relies on the channel's own protection (Shopify: the same @idempotent key and
  changeFromQuantity; Amazon/Walmart: a re-read that finds the target already there).
- one hook per batch (one token, one rate-limit bucket), built from the retailer's per-account settings.
- Shopify compares and swaps (changeFromQuantity = from_qty); Amazon and Walmart are re-read right before
  the write and skipped (`skipped_changed`) when they moved since the snapshot.
- feeds apply later than they are accepted, so a re-read cannot protect them: their rows are committed as
  `applied` (external_id FEED_PENDING) before the submission and are never submitted again.
- rows a killed run left `applied` are read back (verified) by the re-run.
- a write the channel accepted but that does not read back is `failed` ("write accepted but not applied").
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from typing import Callable

from sqlalchemy import select

from omnirecon.adapters import SystemAdapter, get_adapter
from omnirecon.config import Settings
from omnirecon.ledger import finding_store
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.ledger.locks import claim_locks
from omnirecon.remediation.channels import get_hook
from omnirecon.timeutil import REAL_CLOCK, Clock, utcnow

log = logging.getLogger(__name__)
ACTOR = "omnirecon.remediation.push"
NOT_APPLIED = "write accepted but not applied"
AUDIT_FIELDS = {"run_id", "actor", "system", "operation", "target", "correction_id", "idempotency_key",
                "request", "response_status", "outcome", "detail"}

# Read-back and feed polling (the sandbox applies at once; real channels may need a moment).
VERIFY_ATTEMPTS = 6        # reads back after 0.5, 1, 2, 4, 8 s: Amazon applies an ACCEPTED patch after a delay
VERIFY_DELAY_S = 0.5
FEED_POLLS = 60
FEED_POLL_DELAY_S = 2.0


class _Audit:
    """Correction state changes and the hooks' write calls, written into the claiming transaction."""

    def __init__(self, session, run_id: str | None, system: str):
        self.s, self.run_id, self.system = session, run_id, system

    def __call__(self, **fields) -> None:   # the hooks' `audit` callable
        row = {k: v for k, v in fields.items() if k in AUDIT_FIELDS}
        extra = {k: v for k, v in fields.items() if k not in AUDIT_FIELDS}
        request = row.get("request") if isinstance(row.get("request"), dict) else {}
        if extra:
            request = {**request, **_jsonable(extra)}
        self.s.add(m.AuditLog(run_id=row.get("run_id", self.run_id), actor=row.get("actor", "omnirecon.hooks"),
                              system=row.get("system", self.system), operation=str(row.get("operation", "write")),
                              target=_short(row.get("target")), correction_id=row.get("correction_id"),
                              idempotency_key=row.get("idempotency_key"), request=request or None,
                              response_status=row.get("response_status"),
                              outcome=str(row.get("outcome", "called")), detail=_short(row.get("detail"), 4000)))

    def state(self, c: m.Correction, operation: str, outcome: str, detail: str | None = None,
              request: dict | None = None) -> None:
        self.s.add(m.AuditLog(run_id=c.run_id, actor=ACTOR, system=c.channel, operation=operation,
                              target=f"{c.channel_sku}@{c.location}", correction_id=c.id,
                              idempotency_key=c.idempotency_key, request=request, outcome=outcome,
                              detail=_short(detail, 4000)))


def _short(value, limit: int = 500):
    return None if value is None else str(value)[:limit]


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _set(audit: _Audit, c: m.Correction, status: str, detail: str | None = None, operation: str = "status") -> None:
    previous = c.status
    c.status = status
    if detail is not None:
        c.detail = detail
    if status == "applied":
        c.pushed_at = utcnow()
    if status == "verified":
        c.verified_at = utcnow()
    c.updated_at = utcnow()
    audit.state(c, operation, status, detail, request={"from_status": previous, "from_qty": c.from_qty,
                                                       "to_qty": c.to_qty})


def _lock_rows(s, ledger: Ledger, ids: list[int], *where) -> list[m.Correction]:
    """Open a short write transaction and read the rows under it (SQLite: BEGIN IMMEDIATE; PostgreSQL: FOR UPDATE)."""
    q = select(m.Correction).where(m.Correction.id.in_(ids), *where).order_by(m.Correction.id)
    if ledger.dialect == "sqlite":
        s.connection().exec_driver_sql("BEGIN IMMEDIATE")
    else:
        q = q.with_for_update()
    return list(s.scalars(q))


@contextmanager
def _claim(ledger: Ledger, ids: list[int], system: str, hook=None):
    """Claim the rows of one API call -> (session, rows, planned rows, audit). The claim (attempts, audit) commits
    before the caller's channel calls, which run with no transaction open; what the caller changes on the rows
    and audits commits when the block ends. Claim locks keep duplicate pushers out meanwhile."""
    with claim_locks(ledger, ids), ledger.Session() as s:
        try:
            rows = _lock_rows(s, ledger, ids)
            audit = _Audit(s, rows[0].run_id if rows else None, system)
            todo = [c for c in rows if c.status == "planned"]
            for c in todo:
                c.attempts += 1
                audit.state(c, "claim", "pushing")
            s.commit()
            if hook is not None and hasattr(hook, "audit"):
                hook.audit = audit
            yield s, rows, todo, audit
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            if hook is not None and hasattr(hook, "audit"):
                hook.audit = None


def batch_hook(channel: str, settings: Settings, factory: Callable[[str], object] | None = None):
    """The one hook a batch's calls share, with the retailer's account settings (one token, one bucket)."""
    return get_adapter(channel).apply_account_settings(get_hook(channel, factory), settings)


# -- entry point -----------------------------------------------------------------------------
def push_batch(ledger: Ledger, settings: Settings, batch: dict, *,
               hook_factory: Callable[[str], object] | None = None, clock: Clock = REAL_CLOCK) -> dict:
    """Push one batch from plan_corrections; returns counts per resulting status (JSON-serialisable).
    `clock`: the read-back and feed-poll waits go through it."""
    channel, ids = batch["channel"], [int(i) for i in batch["correction_ids"]]
    if settings.mode == "dry-run":
        log.info("dry-run: batch %s on %s not pushed", batch.get("batch"), channel)
        return {"channel": channel, "batch": batch.get("batch"), "pushed": 0, "statuses": {}, "mode": "dry-run"}
    adapter = get_adapter(channel)
    _, path = adapter.write_path(batch.get("method"))
    pusher = {"batch": _push_batches, "per_sku": _push_per_sku, "feed": _push_feed}[path]
    pushed = pusher(ledger, adapter, ids, batch_hook(channel, settings, hook_factory), clock)
    with ledger.session() as s:
        statuses: dict[str, int] = {}
        for st in s.scalars(select(m.Correction.status).where(m.Correction.id.in_(ids))):
            statuses[st] = statuses.get(st, 0) + 1
    log.info("batch %s on %s: %d written, statuses %s", batch.get("batch"), channel, pushed, statuses)
    return {"channel": channel, "batch": batch.get("batch"), "pushed": pushed, "statuses": statuses}


# -- one call for many rows (Shopify: inventorySetQuantities, compare-and-swap, @idempotent) -------
def _call_key(rows: list[m.Correction]) -> str:
    """The @idempotent key of one call: derived from its corrections' keys (same rows -> same key)."""
    return hashlib.sha256("|".join(sorted(r.idempotency_key for r in rows)).encode()).hexdigest()


def _push_batches(ledger: Ledger, adapter: SystemAdapter, ids: list[int], hook, clock: Clock) -> int:
    pushed = 0
    for i in range(0, len(ids), adapter.batch_call_size):
        chunk = ids[i:i + adapter.batch_call_size]
        applied: list[int] = []
        with _claim(ledger, chunk, adapter.system, hook) as (s, rows, todo, audit):
            for _ in range(2):   # a second call only for rows held back by another row's error
                if not todo:
                    break
                todo = _batch_call(adapter, hook, audit, todo)
            for c in todo:
                _set(audit, c, "failed", "not written: the mutation failed twice for other rows")
            applied = [c.id for c in rows if c.status == "applied"]
            pushed += len(applied)
        _verify(ledger, adapter, applied, hook, clock)
    return pushed


def _batch_call(adapter: SystemAdapter, hook, audit: _Audit, rows: list[m.Correction]) -> list[m.Correction]:
    """One write call for many rows; returns rows to retry (blocked only by other rows' errors)."""
    try:
        outcomes = adapter.write_batch(hook, rows, _call_key(rows))
    except Exception as e:
        for c in rows:
            _set(audit, c, "failed", f"write call failed: {e}", operation="write")
        return []
    for c in rows:
        if c.id in outcomes:
            _set(audit, c, *outcomes[c.id], operation="write")
    return [c for c in rows if c.id not in outcomes]


# -- per SKU (Amazon, Walmart): no compare-and-swap: re-read, then write one SKU at a time ---------
def _precheck(audit: _Audit, c: m.Correction, current) -> bool:
    """Decide from a fresh read whether to write; sets the status when not."""
    if current is None:
        _set(audit, c, "failed", "the channel no longer shows this SKU at this location", operation="write")
    elif current == c.to_qty:
        c.external_id = m.NOTHING_WRITTEN
        _set(audit, c, "applied", "already at target on the channel", operation="write")
    elif current != c.from_qty:
        _set(audit, c, "skipped_changed", f"channel changed since the snapshot: {c.from_qty} -> {current}",
             operation="write")
    else:
        return True
    return False


def _push_per_sku(ledger: Ledger, adapter: SystemAdapter, ids: list[int], hook, clock: Clock) -> int:
    """Write each SKU in turn, then read them all back together: a channel that applies a write after a delay
    (Amazon's ACCEPTED patch) costs that delay once per batch, not once per SKU."""
    pushed = 0
    written: list[int] = []
    for cid in ids:
        applied = False
        with _claim(ledger, [cid], adapter.system, hook) as (s, rows, todo, audit):
            if not todo:
                # `applied` here: a run killed before its read-back; verify it below
                unverified = bool(rows) and rows[0].status == "applied"
            else:
                unverified = False
                c = todo[0]
                try:
                    current = adapter.read_one(hook, c)
                    if c.external_id == WRITE_PENDING and current == c.from_qty:
                        current = _settled_read(adapter, hook, c, clock)   # an earlier write may still be queued
                    if not _precheck(audit, c, current):
                        applied = c.status == "applied"
                    else:
                        c.external_id = WRITE_PENDING   # durable before the call: a re-run knows it may have gone out
                        s.commit()
                        applied = _write_one(adapter, hook, audit, c)
                except Exception as e:
                    _set(audit, c, "failed", f"write call failed: {e}", operation="write")
                    applied = False
        pushed += applied
        if applied or unverified:
            written.append(cid)
    _verify(ledger, adapter, written, hook, clock)
    return pushed


WRITE_PENDING = "write:pending"   # external_id of a row whose write call started but whose outcome is not recorded


def _settled_read(adapter: SystemAdapter, hook, c: m.Correction, clock: Clock):
    """A row left by a killed worker in the middle of its write call: the write may have gone out and be queued
    (Amazon applies an ACCEPTED patch after a delay). Read again on the read-back schedule until the target shows
    or the schedule ends; only then is the old value proof that the call never landed."""
    current = c.from_qty
    for attempt in range(VERIFY_ATTEMPTS - 1):
        clock.sleep(VERIFY_DELAY_S * 2 ** attempt)
        current = adapter.read_one(hook, c)
        if current != c.from_qty:
            break
    return current


def _write_one(adapter: SystemAdapter, hook, audit: _Audit, c: m.Correction) -> bool:
    res = adapter.write_one(hook, c)
    c.external_id = _short(res.external_id, 255)
    _set(audit, c, "applied" if res.ok else "failed", res.detail, operation="write")
    return res.ok


# -- feeds (large sets) ------------------------------------------------------------------------
FEED_PENDING = "feed:pending"     # external_id of rows whose feed submission started but has no feed id yet


def _push_feed(ledger: Ledger, adapter: SystemAdapter, ids: list[int], hook, clock: Clock) -> int:
    """Rows are marked applied (external_id FEED_PENDING) and committed before the feed goes out, so a re-run
    after a kill never submits them again: it settles their feed, or, without a feed id (killed mid-submission,
    outcome unknown), verifies them without concluding failure."""
    channel, size = adapter.system, adapter.feed_max_items
    pushed = 0
    for i in range(0, len(ids), size):
        chunk = ids[i:i + size]
        with ledger.session() as s:    # re-read outside any transaction: thousands of reads
            planned = list(s.scalars(select(m.Correction).where(m.Correction.id.in_(chunk),
                                                                m.Correction.status == "planned")))
        reads = {c.id: adapter.safe_read(hook, c) for c in planned}
        with ledger.session() as s:    # no call inside: the committed FEED_PENDING mark is the claim
            rows = _lock_rows(s, ledger, chunk)
            audit = _Audit(s, rows[0].run_id if rows else None, channel)
            todo = []
            for c in rows:
                if c.status != "planned" or c.id not in reads:
                    continue
                c.attempts += 1
                audit.state(c, "claim", "pushing")
                if _precheck(audit, c, reads[c.id]):
                    todo.append(c)
            for c in todo:
                c.external_id = FEED_PENDING
                _set(audit, c, "applied", "feed submission started", operation="write")
            by_feed: dict[str | None, list[int]] = {}    # applied rows by feed id (None: no feed involved)
            for c in rows:
                if c.status == "applied":
                    feed = None if c.external_id == m.NOTHING_WRITTEN else c.external_id
                    by_feed.setdefault(feed, []).append(c.id)
        new = by_feed.pop(FEED_PENDING, [])
        in_doubt = [cid for cid in new if cid not in {c.id for c in todo}]
        submitted = [c.id for c in todo]
        pushed += sum(len(v) for v in by_feed.values()) + len(new)
        if submitted:
            feed_id = _submit_pending(ledger, adapter, submitted, hook)
            if feed_id:
                by_feed.setdefault(feed_id, []).extend(submitted)
        for feed_id, group in by_feed.items():
            settled = bool(feed_id) and _settle_feed(ledger, adapter, feed_id, group, hook, clock)
            _verify(ledger, adapter, group, hook, clock, conclusive=settled or not feed_id)
        _verify(ledger, adapter, in_doubt, hook, clock, conclusive=False)
    return pushed


def _submit_pending(ledger: Ledger, adapter: SystemAdapter, ids: list[int], hook) -> str | None:
    """Submit one feed for rows marked FEED_PENDING; record its id on them (or their failure)."""
    with ledger.Session() as s:
        rows = list(s.scalars(select(m.Correction).where(m.Correction.id.in_(ids)).order_by(m.Correction.id)))
        s.commit()                      # no transaction open during the submission
        audit = _Audit(s, rows[0].run_id, adapter.system)
        hook.audit = audit if hasattr(hook, "audit") else None
        try:
            feed_id = adapter.submit_feed(hook, rows)
        except Exception as e:
            for c in rows:
                c.external_id = None
                _set(audit, c, "failed", f"feed submission failed: {e}", operation="write")
            s.commit()
            return None
        finally:
            if hasattr(hook, "audit"):
                hook.audit = None
        for c in rows:
            c.external_id = _short(feed_id, 255)
            c.detail = f"submitted in feed {feed_id}"
            audit.state(c, "feed_submitted", "applied", c.detail)
        s.commit()
    return feed_id


def _feed_state(result: dict) -> str:
    return str(result.get("status") or result.get("processingStatus") or result.get("feedStatus") or "").upper()


def _settle_feed(ledger: Ledger, adapter: SystemAdapter, feed_id: str, ids: list[int], hook,
                 clock: Clock) -> bool:
    """Wait for the feed to finish; rows it reports as errors become failed. False: outcome unknown."""
    channel = adapter.system
    result: dict = {}
    for _ in range(FEED_POLLS):
        try:
            result = adapter.feed_result(hook, feed_id) or {}
        except Exception as e:   # the read-back still decides verified or failed
            log.warning("%s feed %s: status unavailable (%s)", channel, feed_id, e)
            return False
        if _feed_state(result) in FEED_FINAL:
            break
        clock.sleep(FEED_POLL_DELAY_S)
    else:
        log.warning("%s feed %s still processing", channel, feed_id)
        return False
    bad = _feed_errors(result)
    with ledger.session() as s:
        audit = _Audit(s, None, channel)
        for c in s.scalars(select(m.Correction).where(m.Correction.id.in_(ids), m.Correction.status == "applied")):
            reason = bad.get(c.channel_sku) or bad.get("*")
            if reason:
                _set(audit, c, "failed", f"feed {feed_id}: {reason}", operation="feed_result")
    return True


FEED_FINAL = ("DONE", "FATAL", "CANCELLED", "PROCESSED", "ERROR")


def _feed_errors(result: dict) -> dict[str, str]:
    """{channel SKU: reason} from an Amazon processing report or Walmart item ingestion statuses
    ("*": the whole feed failed)."""
    bad: dict[str, str] = {}
    state = _feed_state(result)
    if state in ("FATAL", "ERROR", "CANCELLED"):
        bad["*"] = f"feed {state}"
    report = result.get("report") or result
    for issue in report.get("issues") or []:
        if str(issue.get("severity", "ERROR")).upper() == "ERROR" and issue.get("sku"):
            bad[issue["sku"]] = f"{issue.get('code')}: {issue.get('message')}"
    details = result.get("items") or ((result.get("itemDetails") or {}).get("itemIngestionStatus")) or []
    for item in details:
        if item.get("ingestionStatus") not in (None, "SUCCESS", "INPROGRESS") and item.get("sku"):
            bad[item["sku"]] = f"{item.get('ingestionStatus')}: {item.get('ingestionErrors') or ''}".strip()
    return bad


# -- read-back ----------------------------------------------------------------------------------
def _verify(ledger: Ledger, adapter: SystemAdapter, ids: list[int], hook, clock: Clock,
            conclusive: bool = True) -> None:
    """applied -> verified when the channel shows the target; else failed (accepted but not applied).
    Not conclusive (a feed whose processing is unconfirmed): rows not yet at the target stay applied.
    Read, then read back with no transaction open, then record under a short one (rows still `applied` only)."""
    if not ids:
        return
    pending = list(ids)
    for attempt in range(VERIFY_ATTEMPTS):
        with ledger.session() as s:
            rows = list(s.scalars(select(m.Correction).where(m.Correction.id.in_(pending),
                                                            m.Correction.status == "applied")))
        if not rows:
            return
        seen = adapter.read_many(hook, rows)
        last = attempt == VERIFY_ATTEMPTS - 1
        pending = []
        with ledger.session() as s:
            audit = _Audit(s, rows[0].run_id, adapter.system)
            for c in _lock_rows(s, ledger, [c.id for c in rows], m.Correction.status == "applied"):
                now = seen.get(c.id)
                if now == c.to_qty:
                    _set(audit, c, "verified", f"read back {now}", operation="verify")
                elif last and not conclusive:
                    c.detail = f"submitted; processing not confirmed, the channel still shows {now}"
                    audit.state(c, "verify", "unconfirmed", c.detail)
                elif last:
                    _set(audit, c, "failed", f"{NOT_APPLIED}: the channel shows {now}, expected {c.to_qty}",
                         operation="verify")
                    audit.s.add(m.AuditLog(run_id=c.run_id, actor=ACTOR, system=adapter.system,
                                           operation="write_not_applied",
                                           target=f"{c.channel_sku}@{c.location}", correction_id=c.id,
                                           idempotency_key=c.idempotency_key, outcome="critical",
                                           detail=f"{NOT_APPLIED}: shows {now}, pushed {c.to_qty}"))
                    finding_store.escalate_unapplied_write(s, run_id=c.run_id, fingerprint=c.fingerprint,
                                                           to_qty=c.to_qty, shown=now)
                else:
                    pending.append(c.id)
        if pending:
            clock.sleep(VERIFY_DELAY_S * 2 ** attempt)
