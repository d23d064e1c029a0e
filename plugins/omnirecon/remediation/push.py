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
import time
from contextlib import contextmanager
from typing import Callable

from sqlalchemy import select

from omnirecon.config import Settings
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.ledger.locks import claim_locks
from omnirecon.remediation.channels import get_hook
from omnirecon.remediation.plan import AMAZON_FEED_MAX_MESSAGES, SHOPIFY_QUANTITIES_PER_CALL, WALMART_FEED_MAX_ITEMS
from omnirecon.timeutil import utcnow

log = logging.getLogger(__name__)
ACTOR = "omnirecon.remediation.push"
NOT_APPLIED = "write accepted but not applied"
STALE_CODES = ("CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE")
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
    from omnirecon.hooks import apply_account_settings
    return apply_account_settings(get_hook(channel, factory), channel, settings)


# -- entry point -----------------------------------------------------------------------------
def push_batch(ledger: Ledger, settings: Settings, batch: dict, *,
               hook_factory: Callable[[str], object] | None = None) -> dict:
    """Push one batch from plan_corrections; returns counts per resulting status (JSON-serialisable)."""
    channel, ids = batch["channel"], [int(i) for i in batch["correction_ids"]]
    if settings.mode == "dry-run":
        log.info("dry-run: batch %s on %s not pushed", batch.get("batch"), channel)
        return {"channel": channel, "batch": batch.get("batch"), "pushed": 0, "statuses": {}, "mode": "dry-run"}
    method = batch.get("method") or {"shopify": "set_quantities", "amazon": "patch", "walmart": "put"}[channel]
    pusher = {("shopify", "set_quantities"): _push_shopify, ("amazon", "patch"): _push_per_sku,
              ("walmart", "put"): _push_per_sku, ("amazon", "feed"): _push_feed,
              ("walmart", "feed"): _push_feed}[(channel, method)]
    pushed = pusher(ledger, channel, ids, batch_hook(channel, settings, hook_factory))
    with ledger.session() as s:
        statuses: dict[str, int] = {}
        for st in s.scalars(select(m.Correction.status).where(m.Correction.id.in_(ids))):
            statuses[st] = statuses.get(st, 0) + 1
    log.info("batch %s on %s: %d written, statuses %s", batch.get("batch"), channel, pushed, statuses)
    return {"channel": channel, "batch": batch.get("batch"), "pushed": pushed, "statuses": statuses}


# -- Shopify: inventorySetQuantities with changeFromQuantity and @idempotent ----------------------
def _shopify_pair(c: m.Correction) -> tuple[str, str]:
    ref = c.ref or {}
    return (str(ref.get("inventory_item_id") or ref.get("inventoryItemId")),
            str(ref.get("location_id") or ref.get("locationId") or c.location))


def _call_key(rows: list[m.Correction]) -> str:
    """The @idempotent key of one call: derived from its corrections' keys (same rows -> same key)."""
    return hashlib.sha256("|".join(sorted(r.idempotency_key for r in rows)).encode()).hexdigest()


def _push_shopify(ledger: Ledger, channel: str, ids: list[int], hook) -> int:
    pushed = 0
    for i in range(0, len(ids), SHOPIFY_QUANTITIES_PER_CALL):
        chunk = ids[i:i + SHOPIFY_QUANTITIES_PER_CALL]
        applied: list[int] = []
        with _claim(ledger, chunk, channel, hook) as (s, rows, todo, audit):
            for _ in range(2):   # a second call only for rows held back by another row's error
                if not todo:
                    break
                todo = _shopify_call(hook, audit, todo)
            for c in todo:
                _set(audit, c, "failed", "not written: the mutation failed twice for other rows")
            applied = [c.id for c in rows if c.status == "applied"]
            pushed += len(applied)
        _verify(ledger, channel, applied, hook)
    return pushed


def _shopify_call(hook, audit: _Audit, rows: list[m.Correction]) -> list[m.Correction]:
    """One inventorySetQuantities call; returns rows to retry (blocked only by other rows' errors)."""
    changes = [{"inventory_item_id": item, "location_id": loc, "quantity": c.to_qty, "change_from": c.from_qty}
               for c in rows for item, loc in [_shopify_pair(c)]]
    try:
        res = hook.set_available(changes, idempotency_key=_call_key(rows), reason="correction",
                                 reference_document_uri=f"gid://omnirecon/Correction/{rows[0].id}")
    except Exception as e:
        for c in rows:
            _set(audit, c, "failed", f"write call failed: {e}", operation="write")
        return []
    if res.get("ok"):
        for c in rows:
            _set(audit, c, "applied", "inventorySetQuantities accepted", operation="write")
        return []
    by_row: dict[int, list[dict]] = {}
    general: list[dict] = []
    for err in res.get("user_errors") or []:
        idx = _quantity_index(err.get("field"))
        (by_row.setdefault(idx, []) if idx is not None and idx < len(rows) else general).append(err)
    current = _read_shopify(hook, rows)
    retry: list[m.Correction] = []
    for n, c in enumerate(rows):
        errs = by_row.get(n, [])
        now = current.get(_shopify_pair(c))
        if now == c.to_qty:
            _set(audit, c, "applied", "already at target on the channel", operation="write")
        elif now is not None and now != c.from_qty:
            _set(audit, c, "skipped_changed", f"channel changed since the snapshot: {c.from_qty} -> {now}",
                 operation="write")
        elif any(e.get("code") in STALE_CODES for e in errs + general) and now is None:
            _set(audit, c, "skipped_changed", "changeFromQuantity stale: the channel changed since the snapshot",
                 operation="write")
        elif errs or (general and len(rows) == 1):
            msg = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in (errs or general))
            _set(audit, c, "failed", f"rejected by Shopify: {msg}", operation="write")
        else:
            retry.append(c)
    if retry and not by_row and general:   # errors we cannot pin to a row: do not loop
        msg = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in general)
        for c in retry:
            _set(audit, c, "failed", f"rejected by Shopify: {msg}", operation="write")
        return []
    return retry


def _quantity_index(field) -> int | None:
    """["input", "quantities", "3", "changeFromQuantity"] -> 3."""
    if not isinstance(field, (list, tuple)):
        return None
    for a, b in zip(field, field[1:]):
        if a == "quantities" and str(b).isdigit():
            return int(b)
    return None


def _read_shopify(hook, rows: list[m.Correction]) -> dict:
    try:
        got = hook.read_available([_shopify_pair(c) for c in rows])
    except Exception as e:
        log.warning("shopify read-back failed: %s", e)
        return {}
    return {(str(k[0]), str(k[1])): v for k, v in (got or {}).items()}


# -- Amazon / Walmart: no compare-and-swap: re-read, then write one SKU at a time ----------------
def _read_one(hook, channel: str, c: m.Correction):
    if channel == "amazon":
        return hook.read_quantity(c.channel_sku)
    return hook.read_inventory(c.channel_sku, _ship_node(c))


def _ship_node(c: m.Correction) -> str:
    ref = c.ref or {}
    return str(ref.get("ship_node") or ref.get("shipNode") or c.location)


def _product_type(c: m.Correction) -> str | None:
    ref = c.ref or {}
    return ref.get("product_type") or ref.get("productType")


def _precheck(audit: _Audit, c: m.Correction, current) -> bool:
    """Decide from a fresh read whether to write; sets the status when not."""
    if current is None:
        _set(audit, c, "failed", "the channel no longer shows this SKU at this location", operation="write")
    elif current == c.to_qty:
        _set(audit, c, "applied", "already at target on the channel", operation="write")
    elif current != c.from_qty:
        _set(audit, c, "skipped_changed", f"channel changed since the snapshot: {c.from_qty} -> {current}",
             operation="write")
    else:
        return True
    return False


def _push_per_sku(ledger: Ledger, channel: str, ids: list[int], hook) -> int:
    pushed = 0
    for cid in ids:
        applied = False
        with _claim(ledger, [cid], channel, hook) as (s, rows, todo, audit):
            if not todo:
                # `applied` here: a run killed before its read-back; verify it below
                unverified = bool(rows) and rows[0].status == "applied"
            else:
                unverified = False
                c = todo[0]
                try:
                    if not _precheck(audit, c, _read_one(hook, channel, c)):
                        applied = c.status == "applied"
                    else:
                        applied = _write_one(hook, audit, channel, c)
                except Exception as e:
                    _set(audit, c, "failed", f"write call failed: {e}", operation="write")
                    applied = False
        pushed += applied
        if applied or unverified:
            _verify(ledger, channel, [cid], hook)
    return pushed


def _write_one(hook, audit: _Audit, channel: str, c: m.Correction) -> bool:
    if channel == "amazon":
        res = hook.patch_quantity(c.channel_sku, _product_type(c), c.to_qty) or {}
        c.external_id = _short(res.get("submission_id"), 255)
        if res.get("status") not in ("ACCEPTED", "VALID"):
            issues = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in res.get("issues") or [])
            _set(audit, c, "failed", f"listing update {res.get('status')}: {issues}".strip(), operation="write")
            return False
    else:
        res = hook.update_inventory(c.channel_sku, _ship_node(c), c.to_qty) or {}
    _set(audit, c, "applied", f"{channel} accepted the update", operation="write")
    return True


# -- feeds (large sets) ------------------------------------------------------------------------
FEED_PENDING = "feed:pending"     # external_id of rows whose feed submission started but has no feed id yet


def _push_feed(ledger: Ledger, channel: str, ids: list[int], hook) -> int:
    """Rows are marked applied (external_id FEED_PENDING) and committed before the feed goes out, so a re-run
    after a kill never submits them again: it settles their feed, or, without a feed id (killed mid-submission,
    outcome unknown), verifies them without concluding failure."""
    size = AMAZON_FEED_MAX_MESSAGES if channel == "amazon" else WALMART_FEED_MAX_ITEMS
    pushed = 0
    for i in range(0, len(ids), size):
        chunk = ids[i:i + size]
        with ledger.session() as s:    # re-read outside any transaction: thousands of reads
            planned = list(s.scalars(select(m.Correction).where(m.Correction.id.in_(chunk),
                                                                m.Correction.status == "planned")))
        reads = {c.id: _safe_read(hook, channel, c) for c in planned}
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
                    by_feed.setdefault(c.external_id, []).append(c.id)
        new = by_feed.pop(FEED_PENDING, [])
        in_doubt = [cid for cid in new if cid not in {c.id for c in todo}]
        submitted = [c.id for c in todo]
        pushed += sum(len(v) for v in by_feed.values()) + len(new)
        if submitted:
            feed_id = _submit_pending(ledger, channel, submitted, hook)
            if feed_id:
                by_feed.setdefault(feed_id, []).extend(submitted)
        for feed_id, group in by_feed.items():
            settled = bool(feed_id) and _settle_feed(ledger, channel, feed_id, group, hook)
            _verify(ledger, channel, group, hook, conclusive=settled or not feed_id)
        _verify(ledger, channel, in_doubt, hook, conclusive=False)
    return pushed


def _submit_pending(ledger: Ledger, channel: str, ids: list[int], hook) -> str | None:
    """Submit one feed for rows marked FEED_PENDING; record its id on them (or their failure)."""
    with ledger.Session() as s:
        rows = list(s.scalars(select(m.Correction).where(m.Correction.id.in_(ids)).order_by(m.Correction.id)))
        s.commit()                      # no transaction open during the submission
        audit = _Audit(s, rows[0].run_id, channel)
        hook.audit = audit if hasattr(hook, "audit") else None
        try:
            feed_id = _submit_feed(hook, channel, rows)
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


def _safe_read(hook, channel: str, c: m.Correction):
    try:
        return _read_one(hook, channel, c)
    except Exception as e:
        log.warning("%s re-read of %s failed: %s", channel, c.channel_sku, e)
        return None


def _submit_feed(hook, channel: str, rows: list[m.Correction]) -> str:
    if channel == "amazon":
        messages = [{"messageId": n, "sku": c.channel_sku, "operationType": "PATCH", "productType": _product_type(c),
                     "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                  "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": c.to_qty}]}]}
                    for n, c in enumerate(rows, start=1)]
        return str(hook.submit_listings_feed(messages))
    items = [{"sku": c.channel_sku, "ship_node": _ship_node(c), "amount": c.to_qty} for c in rows]
    return str(hook.submit_inventory_feed(items))


def _feed_state(result: dict) -> str:
    return str(result.get("status") or result.get("processingStatus") or result.get("feedStatus") or "").upper()


def _settle_feed(ledger: Ledger, channel: str, feed_id: str, ids: list[int], hook) -> bool:
    """Wait for the feed to finish; rows it reports as errors become failed. False: outcome unknown."""
    result: dict = {}
    for _ in range(FEED_POLLS):
        try:
            result = (hook.feed_result(feed_id) if channel == "amazon" else hook.feed_status(feed_id)) or {}
        except Exception as e:   # the read-back still decides verified or failed
            log.warning("%s feed %s: status unavailable (%s)", channel, feed_id, e)
            return False
        if _feed_state(result) in FEED_FINAL:
            break
        time.sleep(FEED_POLL_DELAY_S)
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
def _verify(ledger: Ledger, channel: str, ids: list[int], hook, conclusive: bool = True) -> None:
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
        seen = _read_back(hook, channel, rows)
        last = attempt == VERIFY_ATTEMPTS - 1
        pending = []
        with ledger.session() as s:
            audit = _Audit(s, rows[0].run_id, channel)
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
                    audit.s.add(m.AuditLog(run_id=c.run_id, actor=ACTOR, system=channel, operation="write_not_applied",
                                           target=f"{c.channel_sku}@{c.location}", correction_id=c.id,
                                           idempotency_key=c.idempotency_key, outcome="critical",
                                           detail=f"{NOT_APPLIED}: shows {now}, pushed {c.to_qty}"))
                    _escalate_finding(s, c, now)
                else:
                    pending.append(c.id)
        if pending:
            time.sleep(VERIFY_DELAY_S * 2 ** attempt)


def _escalate_finding(s, c: m.Correction, shown: int | None) -> None:
    """The finding behind an unapplied write becomes critical and an alert: the channel's write path is broken."""
    finding = s.scalars(select(m.Finding).where(m.Finding.run_id == c.run_id,
                                                m.Finding.fingerprint == c.fingerprint)).first()
    if finding is None:
        return
    finding.severity, finding.action = "critical", "alert"
    finding.observed = None if shown is None else str(shown)
    finding.detail = (f"{finding.detail} The channel accepted the correction to {c.to_qty} but still shows "
                      f"{shown}: its write path is not applying updates.")
    state = s.get(m.FindingState, c.fingerprint)
    if state is not None:
        state.severity = "critical"


def _read_back(hook, channel: str, rows: list[m.Correction]) -> dict[int, int | None]:
    if channel == "shopify":
        got = _read_shopify(hook, rows)
        return {c.id: got.get(_shopify_pair(c)) for c in rows}
    return {c.id: _safe_read(hook, channel, c) for c in rows}
