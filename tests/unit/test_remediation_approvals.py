"""Approvals: pending list, approve/reject/timeout, HITL result, request body."""
import pytest
from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.remediation.approvals import (ApprovalError, apply_hitl_result, approval_request_body, approve_all, decide,
                                             pending_approvals)
from omnirecon.remediation.plan import make_batches, plan_corrections
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger, make_settings


@pytest.fixture
def ledger(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, [f"SKU-{i}" for i in range(10)])
    add_finding(ledger, sku="SKU-1", from_qty=100, to_qty=5, detail="shows 100 | <b>ERP</b> implies 5")
    add_finding(ledger, sku="SKU-2", from_qty=0, to_qty=80)
    add_finding(ledger, sku="SKU-3", from_qty=200, to_qty=0)
    plan_corrections(ledger, make_settings(), run_id=RUN, mode="apply")
    return ledger


def _ids(ledger):
    return {p["sku"]: p["correction_id"] for p in pending_approvals(ledger, RUN)}


def test_pending_then_approve_makes_it_pushable_and_reject_closes_it(ledger):
    ids = _ids(ledger)
    assert set(ids) == {"SKU-1", "SKU-2", "SKU-3"} and make_batches(ledger, RUN) == []
    assert decide(ledger, ids["SKU-1"], "approved", by="alice", comment="checked the shelf")["status"] == "planned"
    assert decide(ledger, ids["SKU-2"], "rejected", by="bob")["status"] == "rejected"
    batches = make_batches(ledger, RUN)
    assert [b["correction_ids"] for b in batches] == [[ids["SKU-1"]]]
    assert set(_ids(ledger)) == {"SKU-3"}
    with ledger.session() as s:
        a = s.scalars(select(m.Approval).where(m.Approval.correction_id == ids["SKU-1"])).one()
        assert (a.decision, a.decided_by, a.comment) == ("approved", "alice", "checked the shelf")
        assert a.decided_at is not None
    assert ledger.count(m.AuditLog, m.AuditLog.operation == "approval_decision") == 2


def test_a_decision_cannot_be_made_twice_or_on_unknown_rows(ledger):
    cid = _ids(ledger)["SKU-1"]
    decide(ledger, cid, "rejected", by="bob")
    with pytest.raises(ApprovalError, match="not waiting for approval"):
        decide(ledger, cid, "approved", by="alice")
    with pytest.raises(ApprovalError, match="not found"):
        decide(ledger, 999999, "approved", by="alice")
    with pytest.raises(ApprovalError, match="decision must be"):
        decide(ledger, _ids(ledger)["SKU-2"], "maybe", by="alice")


def test_timeout_follows_the_configured_default(ledger):
    ids = _ids(ledger)
    assert decide(ledger, ids["SKU-1"], "timeout", by="timeout")["status"] == "rejected"
    assert decide(ledger, ids["SKU-2"], "timeout", by="timeout", timeout_default="approve")["status"] == "planned"


def test_hitl_operator_result_applies_to_the_whole_request(ledger):
    ids = _ids(ledger)
    out = apply_hitl_result(ledger, [ids["SKU-1"], ids["SKU-2"]], ["Approve"], by="carol")
    assert {o["status"] for o in out} == {"planned"}
    out = apply_hitl_result(ledger, [ids["SKU-3"]], None, by="timeout")
    assert out[0]["status"] == "rejected" and out[0]["decision"] == "timeout"


def test_request_body_lists_evidence_as_safe_markdown(ledger):
    ids = _ids(ledger)
    body = approval_request_body(ledger, list(ids.values()))
    assert "3 inventory correction(s)" in body and "moving 375 units" in body
    row = next(line for line in body.splitlines() if "SKU-1" in line.replace("\\", ""))
    assert row.count(" | ") == 9                      # the pipe in the detail does not add a column
    assert "<b>" not in body and "\\<b\\>" in body
    assert "-95" in row and "L3" in row.replace("\\", "")


def test_approve_all_returns_batches_for_just_the_approved(ledger):
    add_finding(ledger, sku="SKU-5", from_qty=3, to_qty=2)
    plan = plan_corrections(ledger, make_settings(), run_id=RUN, mode="apply")
    assert [len(b["correction_ids"]) for b in plan.batches] == [1]
    extra = approve_all(ledger, make_settings(), run_id=RUN, by="rehearsal")
    assert [b["batch"] for b in extra] == [2] and sorted(extra[0]["correction_ids"]) == sorted(
        set(range(1, 5)) - set(plan.batches[0]["correction_ids"]))
    assert pending_approvals(ledger, RUN) == [] and approve_all(ledger, make_settings(), run_id=RUN, by="x") == []


def test_an_approval_rechecks_the_current_erp_value_before_it_becomes_pushable(tmp_path):
    from tests.support.remediation import add_snapshot
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, [f"SKU-{i}" for i in range(10)])          # the ERP shows 5 of every SKU
    erp = {"systems": {"erp": {"value": 5, "units_per_channel_unit": 1}}}
    for sku, shown in (("SKU-1", 100), ("SKU-2", 90), ("SKU-3", 80)):
        add_finding(ledger, sku=sku, from_qty=shown, to_qty=5, evidence=erp)
    settings = make_settings()
    plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    ids = _ids(ledger)
    assert decide(ledger, ids["SKU-1"], "approved", by="alice", settings=settings)["status"] == "planned"
    add_snapshot(ledger, "erp", [f"SKU-{i}" for i in range(10)], location="WH-EAST",
                 quantities={"SKU-2": 9, "SKU-3": 80})                # the ERP moved since the requests
    assert decide(ledger, ids["SKU-2"], "approved", by="alice", settings=settings)["status"] == "superseded"
    assert decide(ledger, ids["SKU-3"], "approved", by="alice", settings=settings)["status"] == "withdrawn"
    assert [b["correction_ids"] for b in make_batches(ledger, RUN)] == [[ids["SKU-1"]]]
    with ledger.session() as s:
        c = s.get(m.Correction, ids["SKU-2"])
        assert "the target is now 9" in c.detail and "ERP snapshot" in c.detail
