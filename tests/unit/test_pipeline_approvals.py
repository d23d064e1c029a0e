"""The approvals DAG's glue: one HITL request per waiting correction, asked by one approvals run only; each
response applied (and an approval pushed) on its own, an unanswered request (Airflow applied the default)
counted as a timeout."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from omnirecon import pipeline
from omnirecon.ledger import models as m
from omnirecon.remediation.channels import set_hook_factory
from omnirecon.remediation.plan import plan_corrections
from tests.support.remediation import (CHANNEL_LOCATION, RUN, FakeShopify, add_finding, add_run, fresh_snapshots,
                                       make_ledger, make_settings)


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    led = make_ledger(tmp_path)
    monkeypatch.setenv("OMNIRECON_LEDGER_URL", led.url)
    add_run(led)
    fresh_snapshots(led, [f"SKU-{i}" for i in range(10)])
    for sku, frm, to in (("SKU-1", 100, 5), ("SKU-2", 0, 80), ("SKU-3", 200, 0)):
        add_finding(led, sku=sku, from_qty=frm, to_qty=to)
    plan_corrections(led, make_settings(), run_id=RUN, mode="apply")
    return led


def _ctx(run_id):
    return {"dag": SimpleNamespace(dag_id="omnirecon_approvals"), "run_id": run_id, "params": {}}


def test_requests_then_each_decision_on_its_own(ledger, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    shop = FakeShopify({(f"gid://shopify/InventoryItem/SKU-{i}", CHANNEL_LOCATION["shopify"]): q
                        for i, q in ((1, 100), (2, 0), (3, 200))})
    set_hook_factory(lambda channel: shop)
    monkeypatch.setattr("omnirecon.pipeline.load_settings", make_settings)
    try:
        requests = pipeline.approval_requests_task(**_ctx("scheduled__1"))
        assert all(r["subject"].startswith("Approve inventory correction: shopify SKU-") for r in requests)
        assert len(requests) == 3 and all("SKU-" in r["body"] for r in requests)
        assert pipeline.hitl_kwargs(requests[0]) == {"subject": requests[0]["subject"], "body": requests[0]["body"],
                                                     "request": requests[0]}
        with pytest.raises(AirflowSkipException):          # a second run does not ask the same corrections again
            pipeline.approval_requests_task(**_ctx("scheduled__2"))
        assert len(pipeline.approval_requests_task(**_ctx("scheduled__1"))) == 3     # a retry of the same run does

        # the second request is answered first; it reaches the ledger while the others still wait
        rejected = pipeline.apply_decision_task(requests[1], {"chosen_options": ["Reject"],
                                                              "responded_by_user": {"id": "2", "name": "bob"}},
                                                **_ctx("scheduled__1"))
        assert rejected["outcomes"][0]["status"] == "rejected" and rejected["pushed"] == []
        with ledger.session() as s:
            waiting = {c.id for c in s.scalars(select(m.Correction).where(m.Correction.status == "pending_approval"))}
        assert waiting == {requests[0]["correction_id"], requests[2]["correction_id"]}

        approved = pipeline.apply_decision_task(requests[0], {"chosen_options": ["Approve"],
                                                              "responded_by_user": {"id": "1", "name": "alice"}},
                                                **_ctx("scheduled__1"))
        assert [p["statuses"] for p in approved["pushed"]] == [{"verified": 1}]      # pushed at once
        pipeline.apply_decision_task(requests[2], {"chosen_options": ["Reject"], "responded_by_user": None},
                                     **_ctx("scheduled__1"))          # nobody answered: the default applied
    finally:
        set_hook_factory(None)
    with ledger.session() as s:
        got = {a.correction_id: (a.decision, a.decided_by) for a in s.scalars(select(m.Approval))}
    assert got[requests[0]["correction_id"]] == ("approved", "alice")
    assert got[requests[1]["correction_id"]] == ("rejected", "bob")
    assert got[requests[2]["correction_id"]] == ("timeout", "timeout")
    with pytest.raises(AirflowSkipException):
        pipeline.approval_requests_task(**_ctx("scheduled__3"))          # nothing is waiting any more
