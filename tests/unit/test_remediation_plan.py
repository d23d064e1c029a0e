"""Outbox planning: idempotency keys, guardrails, approvals, dry-run, batching."""
import json

import pytest
from sqlalchemy import func, select

from omnirecon.ledger import models as m
from omnirecon.remediation.plan import PER_SKU_MAX, idempotency_key, make_batches, plan_corrections
from tests.support.remediation import RUN, add_finding, add_run, add_snapshot, fresh_snapshots, make_ledger, make_settings

SKUS = [f"SKU-{i}" for i in range(10)]


def _setup(tmp_path, **settings_over):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    snaps = fresh_snapshots(ledger, SKUS)
    return ledger, make_settings(**settings_over), snaps


def _corrections(ledger):
    with ledger.session() as s:
        return {c.sku + "/" + c.channel: c for c in s.scalars(select(m.Correction))}


def test_idempotency_key_is_stable_and_distinguishes_every_part():
    k = idempotency_key(RUN, "shopify", "SKU-1", "loc", 5)
    assert k == idempotency_key(RUN, "shopify", "SKU-1", "loc", 5) and len(k) == 64
    others = {idempotency_key("other", "shopify", "SKU-1", "loc", 5), idempotency_key(RUN, "amazon", "SKU-1", "loc", 5),
              idempotency_key(RUN, "shopify", "SKU-2", "loc", 5), idempotency_key(RUN, "shopify", "SKU-1", "l2", 5),
              idempotency_key(RUN, "shopify", "SKU-1", "loc", 6)}
    assert k not in others and len(others) == 5


def test_plan_writes_outbox_with_statuses_and_rerun_adds_nothing(tmp_path):
    ledger, settings, snaps = _setup(tmp_path)
    add_finding(ledger, sku="SKU-1", from_qty=8, to_qty=5, snapshot_id=snaps["shopify"])
    add_finding(ledger, sku="SKU-2", from_qty=100, to_qty=5, snapshot_id=snaps["shopify"])   # moves 95 > 50
    add_finding(ledger, sku="SKU-3", channel="walmart", action="approval", from_qty=4, to_qty=3)
    add_finding(ledger, sku="SKU-4", check="order_missing", action="alert", order_id="O-1", push=False)

    first = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    assert first.created == 3
    assert first.counts == {"planned": 1, "pending_approval": 2}
    rows = _corrections(ledger)
    planned = rows["SKU-1/shopify"]
    assert planned.status == "planned" and planned.from_qty == 8 and planned.to_qty == 5
    assert planned.idempotency_key == idempotency_key(RUN, "shopify", "SKU-1", "gid://shopify/Location/1001", 5)
    assert rows["SKU-2/shopify"].status == "pending_approval"
    assert rows["SKU-3/walmart"].status == "pending_approval"
    assert ledger.count(m.Approval) == 2
    assert ledger.count(m.AuditLog, m.AuditLog.operation == "plan_correction") == 3
    assert first.batches == [{"channel": "shopify", "batch": 1, "method": "set_quantities",
                              "correction_ids": [planned.id]}]
    json.dumps(first.to_dict())

    again = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    assert again.created == 0 and again.counts == first.counts
    assert ledger.count(m.Correction) == 3 and ledger.count(m.Approval) == 2


def test_dry_run_records_but_plans_nothing_to_push(tmp_path):
    ledger, settings, _ = _setup(tmp_path)
    add_finding(ledger, sku="SKU-1")
    add_finding(ledger, sku="SKU-2", from_qty=500, to_qty=0)
    res = plan_corrections(ledger, settings, run_id=RUN, mode="dry-run")
    assert res.counts == {"dry_run": 2} and res.batches == []
    assert "would need approval" in _corrections(ledger)["SKU-2/shopify"].detail


def test_stale_failed_or_unusable_snapshots_block_with_reason(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    add_snapshot(ledger, "erp", SKUS, location="WH-EAST")
    add_snapshot(ledger, "shopify", SKUS, age_minutes=45)                 # stale
    add_snapshot(ledger, "walmart", SKUS)
    add_snapshot(ledger, "walmart", [], status="failed")                  # latest attempt failed
    add_snapshot(ledger, "amazon", SKUS, status="unusable")
    for ch in ("shopify", "walmart", "amazon"):
        add_finding(ledger, channel=ch, sku="SKU-1")
    res = plan_corrections(ledger, make_settings(), run_id=RUN, mode="apply")
    rows = _corrections(ledger)
    assert res.counts == {"blocked_guardrail": 3} and res.batches == []
    assert "stale" in rows["SKU-1/shopify"].detail
    assert "failed" in rows["SKU-1/walmart"].detail
    assert "unusable" in rows["SKU-1/amazon"].detail


def test_failed_erp_snapshot_blocks_every_channel(tmp_path):
    ledger, settings, _ = _setup(tmp_path)
    add_snapshot(ledger, "erp", [], status="failed")
    add_finding(ledger, sku="SKU-1")
    plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    c = _corrections(ledger)["SKU-1/shopify"]
    assert c.status == "blocked_guardrail" and c.detail.startswith("erp inventory snapshot")


def test_unsafe_targets_are_never_pushed(tmp_path):
    ledger, settings, _ = _setup(tmp_path)
    erp_listings = add_snapshot(ledger, "erp", SKUS, kind="listings")
    with ledger.session() as s:
        for row in s.scalars(select(m.ListingRow).where(m.ListingRow.snapshot_id == erp_listings)):
            if row.sku == "SKU-3":
                row.item_type = "NonInvtPart"
            if row.sku == "SKU-4":
                row.is_inactive = True
    add_finding(ledger, channel="amazon", sku="SKU-1", channel_location="FBA", location="FBA-US")
    add_finding(ledger, sku="SKU-2", diagnosis="sku_mapping")
    add_finding(ledger, sku="SKU-3")
    add_finding(ledger, sku="SKU-4")
    add_finding(ledger, sku="SKU-5", to_qty=-2)
    add_finding(ledger, channel="walmart", sku="SKU-6", channel_location="99999")
    add_finding(ledger, sku="SKU-7")
    plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    rows = _corrections(ledger)
    reasons = {k: (c.status, c.detail) for k, c in rows.items()}
    assert reasons["SKU-1/amazon"][0] == "blocked_guardrail" and "FBA" in reasons["SKU-1/amazon"][1]
    assert "unmapped SKU" in reasons["SKU-2/shopify"][1]
    assert "non-inventory" in reasons["SKU-3/shopify"][1]
    assert "inactive" in reasons["SKU-4/shopify"][1]
    assert "negative" in reasons["SKU-5/shopify"][1]
    assert "unmapped location" in reasons["SKU-6/walmart"][1]
    assert reasons["SKU-7/shopify"] == ("planned", None)


def test_too_many_changes_on_a_channel_block_all_of_it(tmp_path):
    ledger, settings, _ = _setup(tmp_path, max_correction_fraction=0.2)
    for sku in SKUS[:3]:                       # 3 of 10 shopify SKUs > 20%
        add_finding(ledger, sku=sku)
    add_finding(ledger, channel="walmart", sku="SKU-1")   # 1 of 10 walmart SKUs: fine
    res = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    rows = _corrections(ledger)
    assert all(rows[f"{sku}/shopify"].status == "blocked_guardrail" for sku in SKUS[:3])
    assert "max_correction_fraction" in rows["SKU-0/shopify"].detail
    assert rows["SKU-1/walmart"].status == "planned"
    assert [t["channel"] for t in res.guardrail_trips] == ["shopify"]
    assert res.guardrail_trips[0]["severity"] == "critical"
    assert ledger.count(m.AuditLog, m.AuditLog.operation == "guardrail_trip") == 1


def test_findings_without_push_evidence_are_reported_not_lost(tmp_path):
    ledger, settings, _ = _setup(tmp_path)
    add_finding(ledger, sku="SKU-1", push=False)
    res = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    assert res.created == 0 and len(res.unplannable) == 1 and res.unplannable[0]["sku"] == "SKU-1"


def _planned_rows(ledger, channel, n):
    with ledger.session() as s:
        for i in range(n):
            s.add(m.Correction(idempotency_key=f"{channel}-{i}", run_id=RUN, channel=channel, sku=f"S{i}",
                               channel_sku=f"S{i}", location="L", from_qty=1, to_qty=2, status="planned"))


def test_batches_respect_api_limits_and_the_map_length_cap(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    _planned_rows(ledger, "shopify", 600)
    _planned_rows(ledger, "amazon", PER_SKU_MAX + 1)
    _planned_rows(ledger, "walmart", 30)
    batches = make_batches(ledger, RUN)
    shop = [b for b in batches if b["channel"] == "shopify"]
    assert [len(b["correction_ids"]) for b in shop] == [250, 250, 100]
    amazon = [b for b in batches if b["channel"] == "amazon"]
    assert len(amazon) == 1 and amazon[0]["method"] == "feed" and len(amazon[0]["correction_ids"]) == PER_SKU_MAX + 1
    walmart = [b for b in batches if b["channel"] == "walmart"]
    assert walmart[0]["method"] == "put"
    assert len({b["batch"] for b in batches}) == len(batches)
    all_ids = [i for b in batches for i in b["correction_ids"]]
    assert len(all_ids) == len(set(all_ids)) == 731

    capped = make_batches(ledger, RUN, max_batches=3)
    assert len(capped) <= 3
    assert sorted(i for b in capped for i in b["correction_ids"]) == sorted(all_ids)
    with ledger.session() as s:
        assert s.scalar(select(m.Correction.batch).where(m.Correction.id == capped[-1]["correction_ids"][0])) \
            == capped[-1]["batch"]


# -- one open approval request per (channel, SKU, location) --------------------------------------------------------
def _runs_with(tmp_path, targets):
    """One reconcile run per target (None: the drift cleared), each planned; -> (ledger, run ids)."""
    ledger = make_ledger(tmp_path)
    fresh_snapshots(ledger, [f"SKU-{i}" for i in range(10)])
    runs = []
    for n, to_qty in enumerate(targets):
        run = add_run(ledger, f"omnirecon_reconcile/scheduled__2026-01-05T10:{n:02d}:00+00:00")
        if to_qty is not None:
            add_finding(ledger, run, sku="SKU-1", from_qty=0, to_qty=to_qty)
        plan_corrections(ledger, make_settings(), run_id=run, mode="apply")
        runs.append(run)
    return ledger, runs


def _history(ledger):
    with ledger.session() as s:
        return [(c.run_id, c.status, c.to_qty) for c in s.scalars(select(m.Correction).order_by(m.Correction.id))]


def test_the_same_correction_over_four_runs_keeps_one_open_request(tmp_path):
    ledger, runs = _runs_with(tmp_path, [119, 119, 119, 119])
    assert _history(ledger) == [(runs[0], "pending_approval", 119)]
    assert ledger.count(m.Approval, m.Approval.decision.is_(None)) == 1


def test_a_changed_target_supersedes_and_a_cleared_drift_withdraws(tmp_path):
    ledger, runs = _runs_with(tmp_path, [119, 117, None])
    assert _history(ledger) == [(runs[0], "superseded", 119), (runs[1], "withdrawn", 117)]
    with ledger.session() as s:
        assert sorted(a.decision for a in s.scalars(select(m.Approval))) == ["superseded", "withdrawn"]
        assert s.scalar(select(func.count()).select_from(m.AuditLog)
                        .where(m.AuditLog.operation == "close_request")) == 2


def test_the_ledger_refuses_a_second_open_request_for_a_key(tmp_path):
    from sqlalchemy.exc import IntegrityError
    ledger, runs = _runs_with(tmp_path, [119])
    with ledger.session() as s:
        c = s.scalars(select(m.Correction)).one()
        twin = {k: getattr(c, k) for k in ("channel", "sku", "channel_sku", "location", "from_qty", "status")}
    with pytest.raises(IntegrityError):
        with ledger.session() as s:
            s.add(m.Correction(idempotency_key="x" * 64, run_id=runs[0], to_qty=120, **twin))
