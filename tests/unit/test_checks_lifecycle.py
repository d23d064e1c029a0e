"""reconcile(): persisted findings, fingerprints and lifecycle across runs, evidence, filters (real SQLite)."""
from pathlib import Path

import pytest
from sqlalchemy import select

from omnirecon.checks import reconcile  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.errors import ConfigError  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon_contract.scenario import load  # noqa: E402
from tests.support.ledger_from_scenario import land_scenario  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "scenarios" / "checks"


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.migrate()
    return led


def _land(ledger, name, run="snapshot/1"):
    sc = load(CORPUS / f"{name}.yaml")
    land_scenario(ledger, sc, run_id=run)
    return sc, settings_from_dict(sc.raw["settings"])


def _run(ledger, settings, run_id, sc, **kw):
    ledger.begin_run(run_id, "reconcile")
    return reconcile(ledger, settings, run_id=run_id, now=sc.as_of, **kw)


def test_lifecycle_new_open_resolved_and_idempotent_rerun(ledger):
    sc, st = _land(ledger, "drift-marketplace-listing")
    first = _run(ledger, st, "r1", sc)
    assert sorted(f["lifecycle"] for f in first.findings) == ["new", "new"]
    again = _run(ledger, st, "r1", sc)   # same run again: replaces, does not duplicate
    assert [f["fingerprint"] for f in again.findings] == [f["fingerprint"] for f in first.findings]
    assert ledger.count(m.Finding, m.Finding.run_id == "r1") == 2
    assert {f["lifecycle"] for f in again.findings} == {"new"}
    second = _run(ledger, st, "r2", sc)
    assert {f["lifecycle"] for f in second.findings} == {"open"}
    with ledger.session() as s:
        states = s.scalars(select(m.FindingState)).all()
        assert {(x.status, x.first_seen_run, x.last_seen_run) for x in states} == {("open", "r1", "r2")}
    sc2, _ = _land(ledger, "clean-catalog", run="snapshot/2")   # the channels were corrected
    third = _run(ledger, st, "r3", sc2)
    assert third.findings == []
    with ledger.session() as s:
        assert {x.status for x in s.scalars(select(m.FindingState)).all()} == {"resolved"}


def test_push_evidence_lets_remediation_act_without_rederiving(ledger):
    sc, st = _land(ledger, "drift-marketplace-listing")
    res = _run(ledger, st, "r1", sc)
    amazon = next(f for f in res.findings if f["channel"] == "amazon")
    snap = ledger.latest_snapshot("amazon", "inventory")
    assert amazon["action"] == "push"
    assert amazon["evidence"]["push"] == {"channel_sku": "TEE-BLK-M-FBM", "channel_location": "MFN",
                                          "ref": {"asin": "B0DEMO0001", "product_type": "SHIRT"},
                                          "snapshot_id": snap.id, "from_qty": 9, "to_qty": 6}
    assert (amazon["expected"], amazon["observed"], amazon["delta"]) == ("6", "9", 3)
    ev = amazon["evidence"]
    assert set(ev["connectors"]) == {"erp", "amazon"}
    assert ev["connectors"]["amazon"]["inventory"]["last_attempt"] == "complete"
    assert (ev["systems"]["erp"]["atp"], ev["systems"]["erp"]["value"]) == (8, 6)
    assert ev["systems"]["shopify"]["gid://shopify/Location/1001"]["value"] == 8
    assert ev["first_diverged_at"]
    walmart = next(f for f in res.findings if f["channel"] == "walmart")
    assert walmart["action"] == "approval" and walmart["delta"] == 71   # above approval_threshold_units (50)
    with ledger.session() as s:
        row = s.scalars(select(m.Finding).where(m.Finding.fingerprint == amazon["fingerprint"])).one()
        assert row.evidence["push"]["to_qty"] == 6 and row.detail == amazon["detail"]


def test_fingerprint_is_stable_and_distinct_per_entity(ledger):
    sc, st = _land(ledger, "drift-marketplace-listing")
    a = _run(ledger, st, "r1", sc)
    b = _run(ledger, st, "r2", sc)
    fps = sorted(f["fingerprint"] for f in a.findings)
    assert fps == sorted(f["fingerprint"] for f in b.findings) and len(set(fps)) == 2


def test_filters_restrict_what_is_checked_and_resolved(ledger):
    sc, st = _land(ledger, "drift-marketplace-listing")
    only_mug = _run(ledger, st, "r1", sc, sku_filter="MUG*")
    assert [(f["channel"], f["sku"]) for f in only_mug.findings] == [("walmart", "MUG-WHT")]
    only_amazon = _run(ledger, st, "r2", sc, channels=["amazon"])
    assert [(f["channel"], f["sku"]) for f in only_amazon.findings] == [("amazon", "TEE-BLK-M")]
    with ledger.session() as s:   # the walmart finding was outside r2's scope: still open
        assert {x.channel: x.status for x in s.scalars(select(m.FindingState)).all()} == {"walmart": "open", "amazon": "open"}
    with pytest.raises(ConfigError, match="channels: ebay not configured"):
        _run(ledger, st, "r3", sc, channels=["ebay"])


def test_failed_snapshot_is_unusable_and_api_errors_are_evidence(ledger):
    sc, st = _land(ledger, "snapshot-freshness")
    res = _run(ledger, st, "r1", sc)
    assert res.unusable_systems == ["walmart"]
    walmart = next(f for f in res.findings if f["channel"] == "walmart")
    assert walmart["check"] == "freshness" and walmart["severity"] == "critical"
    assert walmart["evidence"]["api_errors"]["walmart"][0]["status_code"] == 503
    assert "failed" in walmart["detail"]
    assert not any(f["check"] == "inventory_drift" and f["channel"] == "walmart" for f in res.findings)


def test_history_diagnoses_previous_value_as_connector(ledger):
    sc, st = _land(ledger, "connector-stale")   # lands an earlier ERP snapshot, then the current one
    res = _run(ledger, st, "r1", sc)
    shop = next(f for f in res.findings if f["check"] == "inventory_drift" and f["channel"] == "shopify")
    assert shop["diagnosis"] == "L3_connector"
    assert shop["evidence"]["previous_erp_values"] == [12]


def test_data_docs_are_built_in_the_callers_dir(ledger, tmp_path):
    sc, st = _land(ledger, "order-missing")
    res = _run(ledger, st, "r1", sc, gx_dir=str(tmp_path / "gx"))
    assert res.data_docs and str(tmp_path / "gx") in res.data_docs
    assert Path(res.data_docs[len("file://"):]).exists()
