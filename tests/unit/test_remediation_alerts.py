"""Alerts: what alerts, dedup/reminders/resolved notices, evidence package, digest rendering."""
from datetime import timedelta

from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.remediation.alerts import collect_alerts, deliver_digest, run_alerts
from omnirecon.timeutil import utcnow
from tests.support.remediation import (RUN, add_finding, add_run, add_snapshot, fresh_snapshots, make_ledger,
                                      make_settings)

RUN2 = "omnirecon_reconcile/scheduled__2026-01-05T11:00:00+00:00"


def _ledger(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, ["SKU-1", "SKU-2", "<script>alert(1)</script>"])
    return ledger


def _correction(ledger, finding, status, detail=None):
    with ledger.session() as s:
        s.add(m.Correction(idempotency_key=finding.fingerprint, run_id=finding.run_id, fingerprint=finding.fingerprint,
                           channel=finding.channel, sku=finding.sku, channel_sku=finding.sku, location="L",
                           from_qty=8, to_qty=5, status=status, detail=detail, attempts=1))


def test_everything_not_fixed_alerts_and_verified_pushes_do_not(tmp_path):
    ledger = _ledger(tmp_path)
    fixed = add_finding(ledger, sku="SKU-1")
    _correction(ledger, fixed, "verified")
    blocked = add_finding(ledger, channel="walmart", sku="SKU-2")
    _correction(ledger, blocked, "blocked_guardrail", "walmart inventory snapshot 3 is stale")
    add_finding(ledger, check="order_status_mismatch", action="alert", sku=None, order_id="111-222",
                severity="critical", push=False)
    add_finding(ledger, check="mapping", action="alert", sku="ORPHAN", diagnosis="sku_mapping", push=False)
    add_finding(ledger, check="inventory_drift", action="none", sku="SKU-2", diagnosis="in_flight", push=False)
    failed = add_finding(ledger, sku="SKU-2", channel="amazon")
    _correction(ledger, failed, "failed", "write accepted but not applied: the channel shows 8, expected 5")
    with ledger.session() as s:
        s.add(m.AuditLog(run_id=RUN, actor="t", system="shopify", operation="guardrail_trip", outcome="blocked",
                         detail="5 of 10 shopify SKUs would change", request={"channel": "shopify"}))

    d = collect_alerts(ledger, make_settings(), run_id=RUN)
    kinds = sorted((i.kind, i.check or "", i.channel) for i in d.items)
    assert kinds == sorted([("opened", "inventory_drift", "walmart"), ("opened", "order_status_mismatch", "shopify"),
                            ("opened", "mapping", "shopify"), ("opened", "inventory_drift", "amazon"),
                            ("write_failed", "", "amazon"), ("guardrail", "", "shopify")])
    assert d.items[0].severity == "critical"
    walmart = next(i for i in d.items if i.channel == "walmart")
    assert "stale" in walmart.correction
    assert {v["system"] for v in walmart.values} == {"erp", "walmart"}          # each system's value
    assert all(v["updated_at"] for v in walmart.values)
    assert d.run_url == ("http://localhost:8080/dags/omnirecon_reconcile/runs/"
                         "manual__2026-01-05T10%3A00%3A00%2B00%3A00")
    assert {c["system"] for c in d.connectors} >= {"erp", "shopify", "amazon", "walmart"}


def test_open_finding_alerts_once_then_reminds_then_resolves(tmp_path):
    ledger = _ledger(tmp_path)
    settings = make_settings({"alert_reminder_hours": 24})
    add_finding(ledger, check="order_missing", action="alert", order_id="O-1", push=False)
    t0 = utcnow()
    first = run_alerts(ledger, settings, run_id=RUN, now=t0)
    assert first["counts"] == {"opened": 1} and first["transports"] == ["log"]

    add_run(ledger, RUN2)
    add_finding(ledger, RUN2, check="order_missing", action="alert", order_id="O-1", push=False)
    assert collect_alerts(ledger, settings, run_id=RUN2, now=t0 + timedelta(hours=1)).items == []
    later = run_alerts(ledger, settings, run_id=RUN2, now=t0 + timedelta(hours=25))
    assert later["counts"] == {"reminder": 1}

    run3 = "omnirecon_reconcile/scheduled__3"
    add_run(ledger, run3)                                       # the order is no longer missing: checks resolve it
    with ledger.session() as s:
        s.scalars(select(m.FindingState)).one().status = "resolved"
    resolved = run_alerts(ledger, settings, run_id=run3, now=t0 + timedelta(hours=26))
    assert resolved["counts"] == {"resolved": 1}
    add_run(ledger, "omnirecon_reconcile/x")                 # the resolved notice goes out once
    assert run_alerts(ledger, settings, run_id="omnirecon_reconcile/x", now=t0 + timedelta(hours=27))["items"] == 0
    with ledger.session() as s:
        state = s.scalars(select(m.FindingState)).one()
        assert (state.status, state.alerts_sent, state.resolved_notice_sent) == ("resolved", 2, True)
        assert [a.kind for a in s.scalars(select(m.Alert).order_by(m.Alert.id))] == ["opened", "reminder", "resolved"]


def test_out_of_scope_absence_is_not_resolved_but_a_reopened_finding_alerts_again(tmp_path):
    ledger = _ledger(tmp_path)
    settings = make_settings()
    f = add_finding(ledger, check="listing_state", action="alert", sku="SKU-1", push=False)
    t0 = utcnow()
    run_alerts(ledger, settings, run_id=RUN, now=t0)
    add_run(ledger, RUN2)                       # absent, but the checks kept it open (not in this run's scope)
    assert collect_alerts(ledger, settings, run_id=RUN2, now=t0 + timedelta(hours=1)).items == []
    with ledger.session() as s:                 # the checks re-open it after a resolution
        st = s.get(m.FindingState, f.fingerprint)
        st.status, st.first_seen_at, st.first_seen_run = "open", t0 + timedelta(hours=2), "r3"
    add_run(ledger, "r3")
    add_finding(ledger, "r3", check="listing_state", action="alert", sku="SKU-1", push=False)
    d = collect_alerts(ledger, settings, run_id="r3", now=t0 + timedelta(hours=2, minutes=1))
    assert [i.kind for i in d.items] == ["opened"]


def test_guardrail_and_failed_write_alert_once_per_run(tmp_path):
    ledger = _ledger(tmp_path)
    settings = make_settings()
    f = add_finding(ledger, sku="SKU-1")
    _correction(ledger, f, "failed", "write accepted but not applied")
    first = run_alerts(ledger, settings, run_id=RUN, dag_id="omnirecon_reconcile",
                       airflow_run_id="manual__2026-01-05T10:00:00+00:00")
    assert first["counts"] == {"opened": 1, "write_failed": 1}
    assert first["run_url"].endswith("/dags/omnirecon_reconcile/runs/manual__2026-01-05T10%3A00%3A00%2B00%3A00")
    assert run_alerts(ledger, settings, run_id=RUN)["items"] == 0


def test_digest_is_one_escaped_message_with_evidence(tmp_path):
    ledger = _ledger(tmp_path)
    hostile = "<script>alert(1)</script>"
    add_finding(ledger, sku=hostile, detail=f"shows 8 for {hostile}")
    with ledger.session() as s:
        s.add(m.ApiEvent(system="shopify", operation="inventorySetQuantities", outcome="error", status_code=503,
                         message="upstream <b>down</b>"))
    d = collect_alerts(ledger, make_settings(), run_id=RUN)
    html, text = d.html(), d.text()
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>down</b>" not in html and "upstream &lt;b&gt;down&lt;/b&gt;" in html
    assert hostile in text and d.run_url in text and d.run_url in html
    assert "1 issue(s) need attention" in d.subject


def test_nothing_to_alert_sends_and_records_nothing(tmp_path):
    ledger = _ledger(tmp_path)
    d = collect_alerts(ledger, make_settings(), run_id=RUN)
    assert deliver_digest(ledger, make_settings(), d)["items"] == 0 and ledger.count(m.Alert) == 0


def test_stale_snapshot_shows_in_connector_status(tmp_path):
    ledger = _ledger(tmp_path)
    add_snapshot(ledger, "walmart", [], status="failed")
    with ledger.session() as s:
        snap = s.scalars(select(m.Snapshot).where(m.Snapshot.status == "failed")).one()
        snap.error = "walmart getInventory: HTTP 503"
    add_finding(ledger, check="freshness", action="alert", sku=None, channel="walmart", push=False)
    d = collect_alerts(ledger, make_settings(), run_id=RUN)
    walmart = [c for c in d.connectors if c["system"] == "walmart" and c["kind"] == "inventory"]
    assert walmart[0]["status"] == "failed" and "503" in walmart[0]["error"]
