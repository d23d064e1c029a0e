"""Outbox planning: every intended correction is written (idempotently) before any channel call.

Guardrails decide each correction's starting status:
  blocked_guardrail  the data it depends on is stale/failed/unusable, the target is unsafe (FBA, unmapped,
                     non-inventory, inactive, negative), or too much of the channel would change at once;
  dry_run            runtime mode dry-run: recorded, never pushed;
  pending_approval   it moves more than approval_threshold_units (or its finding asks for approval);
  planned            ready to push.

One open approval request per (channel, SKU, location), whichever run planned it (`_one_open_request`): a later
run with the same target keeps it (no new correction, no new request), a changed target supersedes it
(`superseded`) and opens one new request, a cleared drift withdraws it (`withdrawn`). The ledger enforces the
rule with a partial unique index (models.Correction).
"""
from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from omnirecon.adapters import get_adapter
from omnirecon.config import Settings
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.ledger.db import Ledger
from omnirecon.timeutil import iso, parse_ts, utcnow

log = logging.getLogger(__name__)

PUSH_ACTIONS = ("push", "approval")
NON_INVENTORY_TYPES = ("NonInvtPart",)
ACTOR = "omnirecon.remediation.plan"

# Write limits per API call are the adapters' (reference/channel-apis.md).
PER_SKU_MAX = 100                          # up to this many: per-SKU calls; above: a feed
PER_SKU_BATCH = 50                         # per-SKU calls handled by one mapped task
DEFAULT_MAX_MAP_LENGTH = 1024


def idempotency_key(run_id: str, channel: str, sku: str, location: str, to_qty: int) -> str:
    """sha256 of (run, channel, sku, location, target): stable across retries, clears and re-plans of one run.
    Across runs, `_one_open_request` keeps an identical open request instead of a new key."""
    raw = "\x1f".join([run_id, channel, sku, location, str(int(to_qty))])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class PlanResult:
    run_id: str
    mode: str
    created: int = 0                                   # outbox rows written by this call
    counts: dict = field(default_factory=dict)         # status -> corrections of the run
    batches: list = field(default_factory=list)        # [{"channel", "batch", "method", "correction_ids"}]
    guardrail_trips: list = field(default_factory=list)  # [{"channel", "reason", ...}]
    unplannable: list = field(default_factory=list)    # [{"finding_id", "sku", "channel", "reason"}]
    closed: dict = field(default_factory=dict)         # superseded / withdrawn -> open requests closed

    def to_dict(self) -> dict:
        return asdict(self)


# -- guardrail inputs ----------------------------------------------------------------------
def _snapshot_problem(snap: m.Snapshot | None, system: str, now: datetime, freshness_minutes: int) -> str | None:
    """Why a system's inventory snapshot cannot be trusted for a push (None: it can)."""
    if snap is None:
        return f"no {system} inventory snapshot"
    if snap.status != "complete":
        why = f": {snap.error}" if snap.error else ""
        return f"{system} inventory snapshot {snap.id} is {snap.status}{why}"
    if (snap.detail or {}).get("partial"):
        return f"{system} inventory snapshot {snap.id} is partial"
    fetched = parse_ts(snap.fetched_at or snap.finished_at)
    if fetched is None or now - fetched > timedelta(minutes=freshness_minutes):
        return (f"{system} inventory snapshot {snap.id} is stale (fetched {iso(fetched) or 'never'}, "
                f"older than {freshness_minutes} min)")
    return None


def _latest_attempt(s, system: str) -> m.Snapshot | None:
    return s.scalars(select(m.Snapshot).where(m.Snapshot.system == system, m.Snapshot.kind == "inventory",
                                              m.Snapshot.status != "running")
                     .order_by(m.Snapshot.id.desc()).limit(1)).first()


def _erp_items(s, skus: set[str]) -> dict[str, m.ListingRow]:
    """ERP item rows (type, inactive flag) of the latest complete ERP listings snapshot."""
    snap = s.scalars(select(m.Snapshot).where(m.Snapshot.system == "erp", m.Snapshot.kind == "listings",
                                              m.Snapshot.status == "complete")
                     .order_by(m.Snapshot.id.desc()).limit(1)).first()
    if snap is None or not skus:
        return {}
    out: dict[str, m.ListingRow] = {}
    ordered = sorted(skus)
    for i in range(0, len(ordered), 500):
        for row in s.scalars(select(m.ListingRow).where(m.ListingRow.snapshot_id == snap.id,
                                                        m.ListingRow.sku.in_(ordered[i:i + 500]))):
            out[row.sku] = row
    return out


def _channel_sku_count(s, snap: m.Snapshot | None) -> int:
    if snap is None:
        return 0
    return s.scalar(select(func.count(func.distinct(m.InventoryRow.sku)))
                    .where(m.InventoryRow.snapshot_id == snap.id)) or 0


def _item_block_reason(f: m.Finding, push: dict, settings: Settings, erp_item: m.ListingRow | None) -> str | None:
    """Per-correction guardrails: what must never be pushed."""
    channel_location = str(push.get("channel_location") or "")
    adapter = get_adapter(f.channel)
    held = adapter.push_block(settings, channel_location, f.location)
    if held:
        return held
    if f.diagnosis == "sku_mapping" or not push.get("channel_sku"):
        return "unmapped SKU: no channel SKU mapped to this ERP item"
    if not channel_location or not adapter.location_mapped(settings, channel_location):
        return f"unmapped location {channel_location!r} on {f.channel}"
    item_type = (erp_item.item_type if erp_item else None) or (f.evidence or {}).get("item_type")
    inactive = (erp_item.is_inactive if erp_item else None) or (f.evidence or {}).get("is_inactive")
    if item_type in NON_INVENTORY_TYPES:
        return f"ERP item is {item_type} (non-inventory): no quantity to push"
    if inactive:
        return "ERP item is inactive"
    to_qty, from_qty = push.get("to_qty"), push.get("from_qty")
    if not isinstance(to_qty, int) or not isinstance(from_qty, int):
        return f"quantities are not integers (from {from_qty!r} to {to_qty!r})"
    if to_qty < 0:
        return f"negative target quantity {to_qty}"
    return None


# -- planning ------------------------------------------------------------------------------
def plan_corrections(ledger: Ledger, settings: Settings, *, run_id: str, mode: str | None = None,
                     channels=None, now: datetime | None = None,
                     max_batches: int | None = None) -> PlanResult:
    """Write the run's intended corrections to the outbox (insert-or-ignore) and return push batches."""
    mode = mode or settings.mode
    if mode not in ("apply", "dry-run"):
        raise ValueError(f"mode must be apply or dry-run (got {mode!r})")
    now = now or utcnow()
    wanted = tuple(channels) if channels else tuple(settings.channels)
    result = PlanResult(run_id=run_id, mode=mode)
    threshold = int(settings["approval_threshold_units"])
    max_fraction = float(settings["max_correction_fraction"])
    freshness = int(settings["freshness_minutes"])

    with ledger.session() as s:
        findings = s.scalars(select(m.Finding).where(m.Finding.run_id == run_id,
                                                     m.Finding.action.in_(PUSH_ACTIONS),
                                                     m.Finding.channel.in_(wanted))
                             .order_by(m.Finding.id)).all()
        erp_snap = _latest_attempt(s, "erp")
        erp_problem = _snapshot_problem(erp_snap, "erp", now, freshness)
        erp_items = _erp_items(s, {f.sku for f in findings if f.sku})

        intents: dict[str, list[dict]] = {}
        for f in findings:
            push = (f.evidence or {}).get("push")
            if not isinstance(push, dict) or push.get("to_qty") is None:
                result.unplannable.append({"finding_id": f.id, "channel": f.channel, "sku": f.sku,
                                           "reason": "finding has no push evidence (channel ids, from/to quantity)"})
                continue
            reason = _item_block_reason(f, push, settings, erp_items.get(f.sku or ""))
            intents.setdefault(f.channel, []).append({"finding": f, "push": push, "block": reason})

        rows: list[dict] = []
        for channel, items in intents.items():
            snap = _latest_attempt(s, channel)
            problem = erp_problem or _snapshot_problem(snap, channel, now, freshness)
            for it in items:
                ref_snap = it["push"].get("snapshot_id")
                if not problem and not it["block"] and ref_snap and snap is not None and int(ref_snap) != snap.id:
                    it["block"] = _snapshot_problem(s.get(m.Snapshot, int(ref_snap)), channel, now, freshness)
            changing = {it["finding"].sku for it in items if not it["block"]}
            total = _channel_sku_count(s, snap)
            trip = None
            if not problem and changing and (total == 0 or len(changing) / total > max_fraction):
                trip = (f"{len(changing)} of {total} {channel} SKUs would change "
                        f"(> max_correction_fraction {max_fraction:.0%}): nothing pushed to {channel}")
                result.guardrail_trips.append({"channel": channel, "reason": trip, "skus_changing": len(changing),
                                               "skus_total": total, "severity": "critical"})
                log.warning("guardrail tripped: %s", trip)
            for it in items:
                rows.append(_correction_row(run_id, it, problem or trip or it["block"], mode, threshold))

        keys = [r["idempotency_key"] for r in rows]
        existing = set()
        for i in range(0, len(keys), 500):
            existing.update(s.scalars(select(m.Correction.idempotency_key)
                                      .where(m.Correction.idempotency_key.in_(keys[i:i + 500]))))
        new_rows = [r for r in rows if r["idempotency_key"] not in existing]
        new_rows = _hold_in_flight(s, run_id, new_rows, now, result)
        trusted = {ch for ch in wanted if not (erp_problem or _snapshot_problem(_latest_attempt(s, ch), ch, now, freshness))}
        run = s.get(m.Run, run_id)
        new_rows, result.closed = _one_open_request(s, run_id, rows, new_rows, trusted,
                                                    ((run.params or {}).get("sku_filter") if run else None), now)
        result.created = _insert_or_ignore(s, ledger.dialect, new_rows)
        _open_approvals(s, [r["idempotency_key"] for r in new_rows if r["status"] == "pending_approval"])
        for r in new_rows:
            s.add(m.AuditLog(run_id=run_id, actor=ACTOR, system=r["channel"], operation="plan_correction",
                             target=f"{r['channel_sku']}@{r['location']}", idempotency_key=r["idempotency_key"],
                             request={"from_qty": r["from_qty"], "to_qty": r["to_qty"]},
                             outcome=r["status"], detail=r["detail"]))
        for trip in result.guardrail_trips:
            s.add(m.AuditLog(run_id=run_id, actor=ACTOR, system=trip["channel"], operation="guardrail_trip",
                             outcome="blocked", detail=trip["reason"], request=trip))

    result.counts = correction_counts(ledger, run_id)
    result.batches = make_batches(ledger, run_id, channels=wanted, max_batches=max_batches)
    log.info("planned run %s (%s): %d new corrections, %s, %d batches", run_id, mode, result.created,
             result.counts, len(result.batches))
    return result


def _hold_in_flight(s, run_id: str, rows: list[dict], now: datetime, result: PlanResult) -> list[dict]:
    """Rows to push for a (channel, SKU, location) that another run's correction is still on its way to (planned,
    or accepted and not read back: live runs overlap) are held, not planned: never two writes racing for one
    count. The gap, if it stays, is the next run's."""
    flying = {(c.channel, c.sku, c.location): c for c in queries.corrections_in_flight(s, now, other_than=run_id)}
    if not flying:
        return rows
    keep = []
    for r in rows:
        other = flying.get((r["channel"], r["sku"], r["location"])) if r["status"] == "planned" else None
        if other is None:
            keep.append(r)
            continue
        reason = (f"a correction to {other.to_qty} of run {other.run_id} is still on its way ({other.status}): "
                  "not pushed twice")
        result.unplannable.append({"finding_id": None, "channel": r["channel"], "sku": r["sku"], "reason": reason})
        s.add(m.AuditLog(run_id=run_id, actor=ACTOR, system=r["channel"], operation="plan_correction",
                         target=f"{r['channel_sku']}@{r['location']}", idempotency_key=r["idempotency_key"],
                         request={"from_qty": r["from_qty"], "to_qty": r["to_qty"]}, outcome="held", detail=reason))
    return keep


def _correction_row(run_id: str, it: dict, block: str | None, mode: str, threshold: int) -> dict:
    f, push = it["finding"], it["push"]
    from_qty, to_qty = push.get("from_qty"), push.get("to_qty")
    location = str(push.get("channel_location") or f.location or "")
    moved = abs(int(to_qty) - int(from_qty)) if isinstance(to_qty, int) and isinstance(from_qty, int) else 0
    needs_approval = f.action == "approval" or moved > threshold
    if block:
        status, detail = "blocked_guardrail", block
    elif mode == "dry-run":
        status = "dry_run"
        detail = "dry run: recorded, not pushed" + (" (would need approval)" if needs_approval else "")
    elif needs_approval:
        status = "pending_approval"
        detail = f"moves {moved} units (approval threshold {threshold}): waits for a person"
    else:
        status, detail = "planned", None
    return {
        "idempotency_key": idempotency_key(run_id, f.channel, f.sku or "", location, int(to_qty)),
        "run_id": run_id, "fingerprint": f.fingerprint, "channel": f.channel, "sku": f.sku or "",
        "channel_sku": str(push.get("channel_sku") or ""), "location": location,
        "from_qty": int(from_qty) if isinstance(from_qty, int) else 0, "to_qty": int(to_qty),
        "status": status, "attempts": 0, "detail": detail, "ref": push.get("ref") or {},
        "snapshot_id": push.get("snapshot_id"),
    }


def _one_open_request(s, run_id: str, rows: list[dict], new_rows: list[dict], trusted: set[str],
                      sku_filter: str | None, now: datetime) -> tuple[list[dict], dict[str, int]]:
    """Earlier runs' open requests against this run's plan -> (rows to insert, {superseded/withdrawn: n}).
    Same key and target: the open request stands (the row is dropped). Another target, or this run pushes the key
    without asking: the open request is superseded. No row for the key although this run could see it (data of
    the channel and the ERP usable, SKU inside the run's filter): the drift cleared, the request is withdrawn."""
    channels = {r["channel"] for r in rows} | trusted
    open_by_key = {(c.channel, c.sku, c.location): c for c in s.scalars(
        select(m.Correction).where(m.Correction.status == m.OPEN_REQUEST, m.Correction.channel.in_(channels)))}
    closed: dict[str, int] = {}
    if not open_by_key:
        return new_rows, closed
    present = {(r["channel"], r["sku"], r["location"]) for r in rows}
    keep = []
    for r in new_rows:
        old = open_by_key.get((r["channel"], r["sku"], r["location"]))
        if old is None or r["status"] not in ("planned", m.OPEN_REQUEST):
            keep.append(r)
        elif r["status"] == m.OPEN_REQUEST and old.to_qty == r["to_qty"]:
            continue
        else:
            _close_request(s, run_id, old, "superseded", f"superseded by run {run_id}: the target is now "
                           f"{r['to_qty']} (was {old.to_qty})", now, closed)
            keep.append(r)
    for key, old in open_by_key.items():
        if key not in present and old.channel in trusted and (not sku_filter or fnmatch.fnmatchcase(old.sku, sku_filter)):
            _close_request(s, run_id, old, "withdrawn", f"withdrawn by run {run_id}: the drift cleared "
                           f"(no correction needed any more)", now, closed)
    s.flush()        # closed before the new requests go in (the partial unique index)
    return keep, closed


def _close_request(s, run_id: str, c: m.Correction, status: str, detail: str, now: datetime, closed: dict) -> None:
    done = s.execute(m.Correction.__table__.update().where(m.Correction.id == c.id,
                                                           m.Correction.status == m.OPEN_REQUEST)
                     .values(status=status, detail=detail, updated_at=now)).rowcount
    if not done:      # decided meanwhile: nothing to close
        return
    s.execute(m.Approval.__table__.update().where(m.Approval.correction_id == c.id, m.Approval.decision.is_(None))
              .values(decision=status, decided_by=ACTOR, decided_at=now, comment=detail))
    s.add(m.AuditLog(run_id=run_id, actor=ACTOR, system=c.channel, operation="close_request",
                     target=f"{c.channel_sku}@{c.location}", correction_id=c.id, idempotency_key=c.idempotency_key,
                     request={"from_status": m.OPEN_REQUEST, "from_qty": c.from_qty, "to_qty": c.to_qty},
                     outcome=status, detail=detail))
    closed[status] = closed.get(status, 0) + 1
    log.info("correction %s (%s %s at %s): %s", c.id, c.channel, c.sku, c.location, detail)


def _insert_or_ignore(s, dialect: str, rows: list[dict]) -> int:
    if not rows:
        return 0
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    created = 0
    for i in range(0, len(rows), 1000):
        res = s.execute(insert(m.Correction).values(rows[i:i + 1000])
                        .on_conflict_do_nothing(index_elements=["idempotency_key"]))
        created += max(res.rowcount or 0, 0)
    return created


def _open_approvals(s, keys: list[str]) -> None:
    for i in range(0, len(keys), 500):
        for cid in s.scalars(select(m.Correction.id).where(m.Correction.idempotency_key.in_(keys[i:i + 500]))):
            if s.scalar(select(m.Approval.id).where(m.Approval.correction_id == cid)) is None:
                s.add(m.Approval(correction_id=cid))


def correction_counts(ledger: Ledger, run_id: str) -> dict[str, int]:
    with ledger.session() as s:
        return {st: n for st, n in s.execute(select(m.Correction.status, func.count())
                                            .where(m.Correction.run_id == run_id)
                                            .group_by(m.Correction.status))}


# -- batching ------------------------------------------------------------------------------
def _max_map_length() -> int:
    try:
        from airflow.configuration import conf
        return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)
    except ImportError:  # no Airflow here; a malformed setting is an error
        return DEFAULT_MAX_MAP_LENGTH


def batch_method(channel: str, n: int) -> tuple[str, int]:
    """(write method, corrections per batch) for n planned corrections on a channel: up to PER_SKU_MAX per-SKU
    calls where the channel has them, else its feed or batch call (the adapter's)."""
    return get_adapter(channel).batch_method(n, PER_SKU_MAX, PER_SKU_BATCH)


def make_batches(ledger: Ledger, run_id: str, *, channels=None, max_batches: int | None = None,
                 only_ids=None) -> list[dict]:
    """Batches of the run's `planned` corrections, per channel, at most max_map_length of them in all.
    only_ids: batch just these (e.g. freshly approved), numbered after the run's existing batches."""
    limit = max_batches or _max_map_length()
    with ledger.session() as s:
        q = select(m.Correction.id, m.Correction.channel).where(m.Correction.run_id == run_id,
                                                               m.Correction.status == "planned")
        if channels:
            q = q.where(m.Correction.channel.in_(tuple(channels)))
        number = 0
        if only_ids is not None:
            ids = [int(i) for i in only_ids]
            q = q.where(m.Correction.id.in_(ids))
            number = s.scalar(select(func.max(m.Correction.batch)).where(
                m.Correction.run_id == run_id, m.Correction.id.not_in(ids))) or 0
        per_channel: dict[str, list[int]] = {}
        for cid, channel in s.execute(q.order_by(m.Correction.id)):
            per_channel.setdefault(channel, []).append(cid)
        sizes = {c: batch_method(c, len(ids)) for c, ids in per_channel.items()}
        factor = 1
        while sum(math.ceil(len(ids) / (sizes[c][1] * factor)) for c, ids in per_channel.items()) > limit:
            factor *= 2    # bigger batches; push_batch still splits them into API-sized calls
        batches = []
        for channel in sorted(per_channel):
            ids = per_channel[channel]
            method, size = sizes[channel]
            size *= factor
            for i in range(0, len(ids), size):
                number += 1
                part = ids[i:i + size]
                batches.append({"channel": channel, "batch": number, "method": method, "correction_ids": part})
                for j in range(0, len(part), 500):
                    s.execute(m.Correction.__table__.update().where(m.Correction.id.in_(part[j:j + 500]))
                              .values(batch=number))
    return batches
