"""The approvals DAG's glue: one HITL request per waiting correction; responses applied in order,
an unanswered request (Airflow applied the default) counted as a timeout."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from omnirecon import pipeline
from omnirecon.ledger import models as m
from omnirecon.remediation.plan import plan_corrections
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger, make_settings


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


def test_requests_then_decisions(ledger):
    requests = pipeline.approval_requests_task()
    assert all(r["subject"].startswith("Approve inventory correction: shopify SKU-") for r in requests)
    assert len(requests) == 3 and all("SKU-" in r["body"] for r in requests)
    assert pipeline.hitl_kwargs(requests[0]) == {"subject": requests[0]["subject"], "body": requests[0]["body"]}
    responses = [
        {"chosen_options": ["Approve"], "responded_by_user": {"id": "1", "name": "alice"}},
        {"chosen_options": ["Reject"], "responded_by_user": {"id": "2", "name": "bob"}},
        {"chosen_options": ["Reject"], "responded_by_user": None},        # nobody answered: the default applied
    ]
    batches = pipeline.apply_approvals_task(requests, responses)
    assert [b["correction_ids"] for b in batches] == [[requests[0]["correction_id"]]]
    with ledger.session() as s:
        got = {a.correction_id: (a.decision, a.decided_by) for a in s.scalars(select(m.Approval))}
    assert got[requests[0]["correction_id"]] == ("approved", "alice")
    assert got[requests[1]["correction_id"]] == ("rejected", "bob")
    assert got[requests[2]["correction_id"]] == ("timeout", "timeout")
    from airflow.sdk.exceptions import AirflowSkipException
    with pytest.raises(AirflowSkipException):
        pipeline.approval_requests_task()                               # nothing is waiting any more
