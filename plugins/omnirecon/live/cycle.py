"""One change-driven run (the `omnirecon_live` DAG): take the inbox's new notifications, watch the trigger chain
until the propagation deadlines they start have passed, persist the gaps as `trigger_gap` findings (with the push
evidence the outbox needs where omnirecon may close the gap itself) and write `trigger_chain.json` and
`detections.csv`. Planning and pushing are the ordinary remediation tasks that follow in the same DAG run; the next
run's watch may start while they still read back (a SKU whose correction is still on its way is not pushed twice).

The ledger inbox is the durable record: notifications are marked processed only when the run has persisted what it
found, so a failed or killed run leaves them to the next one (the InboxTrigger rings again for stale work).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import func, or_, select, update

from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.live.chain import ChainMonitor, silent_kinds
from omnirecon.model.values import Action, Check
from omnirecon.timeutil import iso, utcnow

log = logging.getLogger(__name__)

TICK_S = 2.0                 # how often a run looks at the chain while deadlines are pending
WAIT_AHEAD_S = 30.0          # a run waits for a propagation deadline at most this far ahead; later ones are the
                             # next run's, which the InboxTrigger starts shortly before (trigger.DEADLINE_LEAD_S)
WINDOW_S = 6 * 3600          # notifications further back than this are not replayed into the monitor
FIGHT_WINDOW = timedelta(hours=1)


def pending_deadline(monitor: ChainMonitor, now: datetime) -> datetime | None:
    """The earliest propagation deadline still ahead: a change not yet followed whose SLA has not yet run out."""
    sla = timedelta(seconds=monitor.sla)
    ahead = [f.change.at + sla for hop in monitor.hops for f in hop.follows
             if f.followed_at is None and not f.moot and f.change.at + sla > now]
    return min(ahead, default=None)


def _claim(ledger) -> list[int]:
    """The unprocessed notifications this run takes: those committed when it starts, which its monitor then reads.
    Not "every id up to the newest": ids are handed out at insert, and with several writers (receivers, the SQS
    consumer) on PostgreSQL a lower id may commit later, after the monitor read past it; that one is the next run's."""
    with ledger.session() as s:
        return list(s.scalars(select(m.Notification.id).where(
            m.Notification.processed_at.is_(None), m.Notification.quarantined.is_(None)).order_by(m.Notification.id)))


def _mark_processed(ledger, ids: list[int], at: datetime) -> int:
    done = 0
    with ledger.session() as s:
        for i in range(0, len(ids), 1000):
            res = s.execute(update(m.Notification).where(m.Notification.id.in_(ids[i:i + 1000]),
                                                         m.Notification.processed_at.is_(None)).values(processed_at=at))
            done += int(res.rowcount or 0)
    return done


def _first_id_since(ledger, since: datetime) -> int:
    with ledger.session() as s:
        first = s.scalar(select(func.min(m.Notification.id)).where(m.Notification.received_at >= since))
    return max(int(first or 0) - 1, 0)


def push_evidence(ledger, settings, finding: dict) -> tuple[dict | None, str | None]:
    """What the outbox needs to close an inventory gap on a channel (channel SKU, location, the write-back ref of
    the latest complete inventory snapshot, from/to quantity) -> (push, None), or (None, why it cannot be pushed)."""
    channel, sku = finding["channel"], finding["sku"]
    try:
        to_qty = int(finding["expected"])
    except (TypeError, ValueError):
        return None, "the source's implied quantity is unknown"
    channel_sku, _units = settings.alias(sku, channel)
    with ledger.session() as s:
        snap = queries.latest_snapshot(s, channel, "inventory")
        if snap is None:
            return None, f"no complete {channel} inventory snapshot to take the write-back ids from"
        rows = queries.inventory_rows(s, snap.id, channel_sku)
        mapped = _mapped_channel_locations(settings, channel)
        rows = [r for r in rows if r.location in mapped]
        if len(rows) != 1:
            return None, (f"{channel} shows {channel_sku} at {len(rows)} mapped locations; a gap over the sum "
                          "cannot be split into per-location writes")
        row = rows[0]
        observed = finding.get("observed")
        from_qty = int(observed) if observed not in (None, "") else int(row.available or 0)
        return {"channel_sku": channel_sku, "channel_location": row.location, "ref": row.ref or {},
                "snapshot_id": snap.id, "from_qty": from_qty, "to_qty": to_qty}, None


def _mapped_channel_locations(settings, channel: str) -> dict[str, str]:
    """{channel location id: ERP location} for the channel's mapped locations."""
    from omnirecon.adapters import get_adapter
    key = get_adapter(channel).location_key
    return {str(loc[key]): loc["erp"] for loc in settings.mapped_locations(key)}


def overwrites(ledger, channel: str, sku: str, since: datetime) -> list[dict]:
    """omnirecon's verified live corrections of (channel, SKU) since a moment: each one the integration undid if
    the gap came back. One that changed nothing (the channel already showed its target: planned so, or found so
    by the fresh read before the write) undid nothing."""
    with ledger.session() as s:
        rows = s.scalars(select(m.Correction).where(
            m.Correction.channel == channel, m.Correction.sku == sku, m.Correction.status == "verified",
            m.Correction.from_qty != m.Correction.to_qty,
            or_(m.Correction.external_id.is_(None), m.Correction.external_id != m.NOTHING_WRITTEN),
            m.Correction.run_id.like("omnirecon_live/%"), m.Correction.verified_at >= since)
            .order_by(m.Correction.id)).all()
        return [{"run_id": c.run_id, "to_qty": c.to_qty, "verified_at": iso(c.verified_at)} for c in rows]


def unposted_units(monitor: ChainMonitor, placed_by: datetime | None = None) -> dict[str, int]:
    """ERP SKU -> units in channel orders the chain saw accepted that the ERP has not recorded yet (any channel);
    placed_by: only orders accepted at or before that moment."""
    out: dict[str, int] = {}
    for hop in monitor.hops:
        if hop.kind != "orders":
            continue
        for f in hop.follows:
            if f.followed_at is None and not f.moot and (placed_by is None or f.change.at <= placed_by):
                for sku, units in zip(f.change.skus, f.change.units):
                    out[sku] = out.get(sku, 0) + int(units or 0)
    return out


def close_gaps(ledger, settings, findings: list[dict], now: datetime, unposted: dict[str, int] | None = None) -> list[dict]:
    """Give each push gap its push evidence, or turn it into an alert with the reason: no safe write, or the
    retailer's integration keeps overwriting omnirecon's corrections (its defect repeats: never fight it).
    The pushed quantity also leaves out the units of orders accepted on any channel that the ERP has not recorded
    yet (`unposted`), so a correction never offers stock that is already sold."""
    rounds = int(settings.get("integration_fight_rounds", 3))
    unposted = unposted or {}
    in_flight: dict[tuple[str, str], list] = {}
    if any(f["action"] == Action.PUSH for f in findings):
        with ledger.session() as s:
            for c in queries.corrections_in_flight(s, now):
                in_flight.setdefault((c.channel, c.sku), []).append(c)
    for f in findings:
        if f["action"] != Action.PUSH:
            continue
        flying = [{"run_id": c.run_id, "to_qty": c.to_qty, "status": str(c.status)}
                  for c in in_flight.get((f["channel"], f["sku"]), ()) if c.run_id != f.get("run_id")]
        if flying:     # an earlier run's push of this SKU is still on its way (or reading back): never two writes
            f["action"] = Action.NONE
            f["detail"] += (f" A correction to {flying[-1]['to_qty']} (run {flying[-1]['run_id']}) is still on its "
                            f"way to {f['channel']}: not pushed twice; a later run pushes if the gap stays.")
            f["evidence"]["in_flight"] = flying
            f["evidence"].pop("push", None)
            continue
        undone = overwrites(ledger, f["channel"], f["sku"], now - FIGHT_WINDOW)
        if len(undone) >= rounds:
            hop = f["evidence"].get("hop")
            f["action"] = Action.ALERT
            f["detail"] += (f" omnirecon corrected it {len(undone)} times in the last hour and the integration "
                            f"overwrote it again each time: not pushed again; fix hop {hop}.")
            f["evidence"]["overwrites"] = undone
            continue
        push, why = push_evidence(ledger, settings, f)
        if push is None:
            f["action"] = Action.ALERT
            f["detail"] += f" Not pushed: {why}."
        else:
            held = unposted.get(f["sku"], 0) // settings.alias(f["sku"], f["channel"])[1]
            if held:
                push["to_qty"] = max(0, push["to_qty"] - held)
                f["evidence"]["unposted_units"] = held
            f["evidence"]["push"] = push
            f["location"] = _mapped_channel_locations(settings, f["channel"]).get(push["channel_location"])
    return findings


def _to_current(settings, monitor: ChainMonitor, findings: list[dict]) -> list[dict]:
    """A gap is closed to what the ERP implies for the channel now (the ERP is the source of truth): not to the
    value of the change that was detected late (a later one may still be within its SLA), nor, on a channel ->
    channel hop, to what the source channel shows."""
    latest = {(hop.dst, f.change.key): f.expected for hop in monitor.hops
              if hop.src == "erp" and hop.kind == "inventory" for f in hop.follows}      # time order: the latest wins
    for f in findings:
        if f["action"] != Action.PUSH:
            continue
        implied = erp_implied(settings, monitor, f["channel"], f["sku"])
        current = implied[0] if implied else latest.get((f["channel"], f["sku"]))
        if isinstance(current, int) and str(current) != f["expected"]:
            f["evidence"]["detected_expected"] = f["expected"]
            f["expected"] = str(current)
            if f["observed"] not in (None, ""):
                f["delta"] = int(f["observed"]) - current
    return findings


def _pushable_location(settings, channel: str) -> str | None:
    """The ERP location behind the channel's one pushable location (None: several, or none)."""
    from omnirecon.adapters import get_adapter
    adapter = get_adapter(channel)
    key = adapter.location_key
    locs = [l for l in settings.mapped_locations(key) if adapter.push_block(settings, str(l[key]), l["erp"]) is None]
    return locs[0]["erp"] if len(locs) == 1 else None


def erp_implied(settings, monitor: ChainMonitor, channel: str, sku: str, held: int = 0):
    """(quantity, ERP location, available there, safety stock): what the channel should show for the SKU by the
    contract formula over the ERP's levels as the chain last heard them, less `held` units sold elsewhere that
    the ERP has not recorded; None where one location's count cannot say it (several, or no ERP level)."""
    erp_loc = _pushable_location(settings, channel)
    available = monitor._erp_levels_now().get((sku, erp_loc)) if erp_loc else None
    if available is None:
        return None
    units = max(settings.alias(sku, channel)[1], 1)
    safety = int(settings.safety_stock(sku, channel))
    return max(0, available - held - safety) // units, erp_loc, available, safety


def exposures(settings, monitor: ChainMonitor, run_id: str, now: datetime,
              skip: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """Channels offering more than the ERP can cover, found from the changes themselves, before any sale can
    oversell them: a channel whose count moved above what the ERP implies (a manual edit, an app, a relay), or
    that still shows stock sold on another channel whose order the ERP has not recorded within the SLA. What the
    ERP implies is the contract formula over the ERP's levels as the chain last heard them, less those orders'
    units. A channel still waiting for an ERP change to reach it is left to the trigger chain (its deadline), and
    (channel, SKU) pairs in `skip` (already a trigger_gap push) are not raised twice. -> inventory_drift findings
    (action push, the reconcile's fingerprint), not yet given their push evidence (close_gaps), closest to
    selling out first."""
    from omnirecon.checks.findings import fingerprint
    from omnirecon.model.values import Diagnosis, Severity
    sla = timedelta(seconds=monitor.sla)
    unposted = unposted_units(monitor, placed_by=now - sla)
    erp_moved = {c.key: c.at for c in monitor.changes.get(("erp", "inventory"), [])}    # time order: last wins
    out = []
    for channel in monitor.channels:
        if channel not in settings["channels"] or _pushable_location(settings, channel) is None:
            continue                     # a count over several locations cannot be split into one write
        moved = {c.key: c.at for c in monitor.changes.get((channel, "inventory"), [])}
        for sku in sorted(set(moved) | {k for k, v in unposted.items() if v}):
            if (channel, sku) in skip:
                continue
            held = unposted.get(sku, 0)
            implied = erp_implied(settings, monitor, channel, sku, held)
            shown = monitor._last_value(channel, "inventory", sku)
            if implied is None or not isinstance(shown, int) or shown <= implied[0]:
                continue
            erp_at = erp_moved.get(sku)
            if erp_at is not None and now - erp_at <= sla and (sku not in moved or moved[sku] < erp_at):
                continue                 # an ERP change on its way to the channel: the trigger chain's
            value, erp_loc, available, safety = implied
            covered = erp_implied(settings, monitor, channel, sku)[0]
            why = (f"orders for {held} unit(s) accepted more than {monitor.sla:g} s ago that the ERP has not "
                   "recorded" if shown <= covered else f"{channel} moved to {shown} on its own")
            out.append({"run_id": run_id, "fingerprint": fingerprint(Check.INVENTORY_DRIFT, channel, sku, erp_loc, None),
                        "check": Check.INVENTORY_DRIFT, "severity": Severity.CRITICAL, "channel": channel,
                        "sku": sku, "location": erp_loc, "order_id": None, "expected": str(value),
                        "observed": str(shown), "delta": shown - value,
                        "diagnosis": Diagnosis.L3_CONNECTOR if shown <= covered else Diagnosis.UNKNOWN,
                        "action": Action.PUSH,
                        "detail": (f"{channel} offers {shown} of SKU {sku} while the ERP implies {value} "
                                   f"({erp_loc} available {available}, safety stock {safety}, "
                                   f"{held} unit(s) sold elsewhere not yet in the ERP): {why}; a sale there "
                                   "could oversell."),
                        "evidence": {"hop": f"erp->{channel}", "live": "exposure",
                                     "erp_available": available, "safety_stock": safety,
                                     "unposted_units": held, "channel_changed_at": iso(moved[sku]) if sku in moved else None,
                                     "erp_changed_at": iso(erp_at) if erp_at else None}})
    return sorted(out, key=lambda f: (int(f["expected"]), -f["delta"]))


def _new(ledger, found: list[dict]) -> bool:
    """Is any of these findings not open already (an exposure an earlier run or the reconcile has not raised)?"""
    fps = [f["fingerprint"] for f in found]
    if not fps:
        return False
    with ledger.session() as s:
        known = set(s.scalars(select(m.FindingState.fingerprint).where(m.FindingState.fingerprint.in_(fps),
                                                                       m.FindingState.status == "open")))
    return any(fp not in known for fp in fps)


def _risk(f: dict) -> tuple:
    """Closest to selling out first (what the channel should show), then the largest over-promise."""
    try:
        return int(f["expected"]), -int(f.get("delta") or 0)
    except (TypeError, ValueError):
        return float("inf"), 0


def within_guardrail(ledger, settings, findings: list[dict], more: list[dict]) -> tuple[list[dict], list[dict]]:
    """(taken, left) of `more` push findings: per channel, as many as keep the run's pushes within the planner's
    max_correction_fraction of the channel's SKUs next to those `findings` already push (taken in order, so the
    riskiest first). Beyond it the planner would push nothing to that channel at all; what is left waits for the
    next run, once these are closed."""
    fraction = float(settings["max_correction_fraction"])
    pushing: dict[str, set] = {}
    for f in findings:
        if f["action"] == Action.PUSH:
            pushing.setdefault(f["channel"], set()).add(f["sku"])
    taken, left = [], []
    with ledger.session() as s:
        for f in more:
            snap = queries.latest_snapshot(s, f["channel"], "inventory")
            total = s.scalar(select(func.count(func.distinct(m.InventoryRow.sku)))
                             .where(m.InventoryRow.snapshot_id == snap.id)) if snap else 0
            skus = pushing.setdefault(f["channel"], set())
            if total and (len(skus | {f["sku"]})) / total <= fraction:
                skus.add(f["sku"])
                taken.append(f)
            else:
                left.append(f)
    return taken, left


def _utc(at: datetime) -> datetime:
    from datetime import timezone
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def silence_findings(ledger, settings, run_id: str, now: datetime, resubscribe: Callable | None = None) -> list[dict]:
    """A platform that notified before and has gone quiet while its own latest snapshot shows changes after its
    last notification (a deleted subscription, a delivery that stopped without a word): a `freshness` finding with
    the evidence, and the subscriptions re-created (`resubscribe(system)`); the scheduled snapshots and reconcile
    cover it meanwhile."""
    from omnirecon.checks.findings import silence_fingerprint
    from omnirecon.model.values import Diagnosis, Severity
    grace = timedelta(seconds=float(settings.get("propagation_sla_seconds", 60)))
    out = []
    silent = silent_kinds()
    with ledger.session() as s:
        last_seen = queries.last_notification_per_source(s)
        for system, last in sorted(last_seen.items()):
            last = _utc(last)
            snap = queries.latest_snapshot(s, system, "inventory")
            if (system, "inventory") in silent or snap is None:   # silent: no notification to miss
                continue
            changed, sample = queries.rows_changed_after(s, snap.id, last + grace)
            if not changed:
                continue
            examples = [{"sku": r.sku, "location": r.location, "available": r.available,
                         "updated_at": iso(_utc(r.updated_at))} for r in sample]
            out.append({"system": system, "last": last, "snapshot": snap, "changed": changed, "examples": examples})
    findings = []
    for q in out:
        system, last = q["system"], q["last"]
        resubscribed = None
        if resubscribe is not None:
            try:
                resubscribed = resubscribe(system)
            except Exception as e:        # noqa: BLE001 - the finding must still be raised, with why
                resubscribed = f"re-subscribing failed: {e}"
        detail = (f"{system} has sent no change notification since {iso(last)}, while its snapshot of "
                  f"{iso(_utc(q['snapshot'].fetched_at))} shows {q['changed']} inventory change(s) after that "
                  "(a deleted subscription or deliveries stopped without an error); "
                  + (f"subscriptions ensured again ({resubscribed}); " if resubscribed else "")
                  + "the scheduled snapshots and reconcile cover it meanwhile.")
        findings.append({"run_id": run_id, "fingerprint": silence_fingerprint(system),
                         "check": Check.FRESHNESS, "severity": Severity.WARNING, "channel": system, "sku": None,
                         "location": None, "order_id": None, "expected": None, "observed": None, "delta": None,
                         "diagnosis": Diagnosis.L3_CONNECTOR, "action": Action.ALERT, "detail": detail,
                         "evidence": {"last_notification_at": iso(last), "snapshot_id": q["snapshot"].id,
                                      "changes_after": q["changed"], "examples": q["examples"],
                                      "resubscribed": resubscribed}})
    return findings


def live_cycle(ledger, settings, *, run_id: str, reader: Callable | None = None, readable=(),
               out_dir: Path | None = None, now: Callable[[], datetime] = utcnow,
               sleep: Callable[[float], None] = time.sleep, max_watch_s: float | None = None,
               wait_ahead_s: float | None = None, resubscribe: Callable | None = None) -> dict:
    """One live run -> a summary (with `next_deadline`: the earliest propagation deadline still ahead, which the
    InboxTrigger wakes the next run for). The run waits only for deadlines within `wait_ahead_s` and stops as soon
    as it has gaps to close. `now`/`sleep` are the clock (tests drive them)."""
    from omnirecon.checks.findings import persist
    from omnirecon.report import exports

    taken = _claim(ledger)
    start = now()
    monitor = ChainMonitor(settings, ledger=ledger, reader=reader, readable=readable)
    monitor.cursor = _first_id_since(ledger, start - timedelta(seconds=WINDOW_S))
    ahead = timedelta(seconds=WAIT_AHEAD_S if wait_ahead_s is None else wait_ahead_s)
    limit = start + (timedelta(seconds=max_watch_s) if max_watch_s is not None else ahead)
    ticks = 0
    while True:
        t = now()
        monitor.tick(t)
        ticks += 1
        due = pending_deadline(monitor, t)
        # a deadline further ahead is left to the next run (the trigger wakes it just before); a channel newly
        # offering stock the ERP cannot cover is closed now, by this run's push tasks (one already open, e.g. in a
        # dry run, does not cut the wait short)
        if due is None or due > t + ahead or t >= limit or _new(ledger, exposures(settings, monitor, run_id, t)):
            break
        sleep(max(0.0, min(TICK_S, (due - t).total_seconds() + 0.5)))
    t = now()
    monitor.save(run_id, persist_findings=False)
    findings = close_gaps(ledger, settings, _to_current(settings, monitor, monitor.findings(run_id)), t,
                          unposted_units(monitor))
    pushed = {(f["channel"], f["sku"]) for f in findings if f["action"] == Action.PUSH}
    pushes = sorted([f for f in findings if f["action"] == Action.PUSH]
                    + exposures(settings, monitor, run_id, t, skip=pushed), key=_risk)
    now_pushed, deferred = within_guardrail(ledger, settings, [], pushes)
    for f in deferred:
        if f["check"] == Check.TRIGGER_GAP:       # pushed again by a later run, once the riskier ones are closed
            f["action"] = Action.NONE
            f["detail"] += " Left to the next run: this run already pushes max_correction_fraction of the channel's SKUs."
            f["evidence"].pop("push", None)
    findings += close_gaps(ledger, settings, [f for f in now_pushed if f["check"] != Check.TRIGGER_GAP], t)
    if deferred:
        log.info("live run %s: %d more push(es) left to the next run (max_correction_fraction): %s", run_id, len(deferred),
                 ", ".join(f"{f['channel']} {f['sku']}" for f in deferred[:20]))
    silent = silence_findings(ledger, settings, run_id, t, resubscribe)
    from omnirecon.adapters import systems
    from omnirecon.checks.findings import silence_fingerprint
    owned = {silence_fingerprint(system) for system in systems()}     # a platform heard again resolves its own
    persist(ledger, run_id, findings + silent, t,
            lambda st: st.check == Check.TRIGGER_GAP or st.fingerprint in owned, shard="live",
            checks=(Check.TRIGGER_GAP, Check.FRESHNESS))
    findings += silent
    processed = _mark_processed(ledger, taken, t)
    chain = monitor.chain()
    held = sum(bool(f["evidence"].get("in_flight")) for f in findings)
    # pushes left over (the fraction, or one in flight): the next run at once; a dry run closes nothing, so its
    # leftovers are the same in every run and wake none
    next_due = t if (deferred or held) and settings.mode == "apply" else pending_deadline(monitor, t)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        exports.write_trigger_chain_json(chain, out_dir / "trigger_chain.json")
        exports.write_detections_csv(ledger, out_dir / "detections.csv")
    actions: dict[str, int] = {}
    for f in findings:
        actions[str(f["action"])] = actions.get(str(f["action"]), 0) + 1
    log.info("live run %s: %d notification(s) taken, %d tick(s), %d trigger_gap finding(s) %s", run_id, processed,
             ticks, len(findings), actions)
    return {"run_id": run_id, "notifications": processed, "ticks": ticks, "findings": len(findings),
            "silent": sorted(f["channel"] for f in silent), "next_deadline": iso(next_due) if next_due else None,
            "pushes_deferred": len(deferred), "pushes_in_flight": held,
            "actions": actions, "hops": len(chain["hops"]),
            "broken": sum(h["state"] == "broken" for h in chain["hops"])}


def silent_target_reader(settings):
    """(reader, readable) for the connected targets that send no notification for some changes (their adapters'
    `silent_kinds`: Walmart's quantities above zero), read through each adapter's hook and account settings."""
    from omnirecon.adapters import all_adapters
    from omnirecon.connections import connection_exists
    readers = {}
    for adapter in all_adapters():
        if adapter.silent_kinds and connection_exists(adapter.conn_id):
            hook = adapter.apply_account_settings(adapter.hook(), settings)
            readers[adapter.system] = adapter.quantity_reader(hook, settings)
    if not readers:
        return None, ()
    return (lambda system, keys: readers[system](system, keys)), tuple(readers)
