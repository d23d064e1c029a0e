"""findings.csv, corrections.csv and summary.json exactly as shared/contracts/outputs.md."""
import csv
import json

from omnirecon.ledger import models as m
from omnirecon.report.exports import write_corrections_csv, write_findings_csv, write_summary_json
from tests.support.remediation import RUN, add_finding, add_run, add_snapshot, make_ledger

FINDINGS_HEADER = ["run_id", "check", "severity", "channel", "sku", "location", "order_id", "expected", "observed",
                   "delta", "diagnosis", "action", "detail"]
CORRECTIONS_HEADER = ["run_id", "channel", "sku", "channel_sku", "location", "from_qty", "to_qty", "status",
                      "idempotency_key", "attempts", "detail"]


def test_findings_csv_columns_and_rows(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    add_finding(ledger, sku="TEE, \"black\"", from_qty=8, to_qty=5, detail="shows 8; ERP implies 5\nsecond line")
    add_finding(ledger, check="order_missing", action="alert", order_id="111-1", push=False, sku=None)
    n = write_findings_csv(ledger, RUN, tmp_path / "out" / "findings.csv")
    with open(tmp_path / "out" / "findings.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert n == 2 and rows[0] == FINDINGS_HEADER
    assert rows[1] == [RUN, "inventory_drift", "warning", "shopify", "TEE, \"black\"", "WH-EAST", "", "5", "8", "3",
                       "L3_connector", "push", "shows 8; ERP implies 5\nsecond line"]
    assert rows[2][1] == "order_missing" and rows[2][4] == "" and rows[2][6] == "111-1" and rows[2][9] == ""


def test_corrections_csv_columns(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    with ledger.session() as s:
        s.add(m.Correction(idempotency_key="k" * 64, run_id=RUN, channel="amazon", sku="TEE-BLK-M",
                           channel_sku="TEE-BLK-M-FBM", location="MFN", from_qty=8, to_qty=3, status="verified",
                           attempts=1, detail=None))
    write_corrections_csv(ledger, RUN, tmp_path / "corrections.csv")
    rows = list(csv.reader(open(tmp_path / "corrections.csv", newline="", encoding="utf-8")))
    assert rows == [CORRECTIONS_HEADER, [RUN, "amazon", "TEE-BLK-M", "TEE-BLK-M-FBM", "MFN", "8", "3", "verified",
                                         "k" * 64, "1", ""]]


def test_summary_json(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger, stats={"skus_checked": 42})
    add_snapshot(ledger, "erp", ["A", "B"], run_id="snap/1")
    add_snapshot(ledger, "erp", ["A"], kind="listings", run_id="snap/1")
    add_snapshot(ledger, "shopify", [], status="failed", run_id="snap/1")
    add_snapshot(ledger, "walmart", ["A"], run_id="snap/other")
    with ledger.session() as s:
        snap = s.get(m.Snapshot, 1)
        snap.rows_quarantined, snap.rows_in = 1, 3
    add_finding(ledger, sku="A")
    add_finding(ledger, sku="B")
    add_finding(ledger, check="freshness", action="alert", push=False, sku=None)
    summary = write_summary_json(ledger, run_id=RUN, snapshot_run_ids=["snap/1"], duration_s=12.3456,
                                 path=tmp_path / "summary.json")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert list(summary) == ["run_id", "skus_checked", "findings", "corrections", "snapshots", "duration_s"]
    assert summary["skus_checked"] == 42 and summary["duration_s"] == 12.346
    assert summary["findings"] == {"freshness": 1, "inventory_drift": 2} and summary["corrections"] == {}
    assert set(summary["snapshots"]) == {"erp", "shopify"}
    erp = summary["snapshots"]["erp"]
    assert (erp["rows"], erp["quarantined"], erp["status"]) == (3, 1, "complete") and erp["fetched_at"].endswith("Z")
    assert summary["snapshots"]["shopify"]["status"] == "failed"
