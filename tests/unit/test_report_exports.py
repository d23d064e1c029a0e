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


def test_csv_cells_from_channels_cannot_run_as_formulas(tmp_path):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    hostile = ['=HYPERLINK("http://evil","x")', "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR"]
    for i, sku in enumerate(hostile):
        add_finding(ledger, sku=sku, from_qty=2, to_qty=5 + i, detail=f"=1+1 {i}")   # delta -3, -4, ...
    write_findings_csv(ledger, RUN, tmp_path / "findings.csv")
    with open(tmp_path / "findings.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sku"] for r in rows] == ["'" + s for s in hostile]
    assert all(r["detail"].startswith("'=1+1") for r in rows)
    assert [r["delta"] for r in rows] == [str(-3 - i) for i in range(len(hostile))]   # numbers stay numbers


def test_safe_cell_neutralises_text_only():
    from omnirecon.report.exports import safe_cell
    for number in ("-3", "+4", "-0.5", "-1e3", "12", ""):
        assert safe_cell(number) == number
    for text in ("=1", "-", "-x", "+", "@", "-inf", "-1-1"):
        assert safe_cell(text) == "'" + text
    assert safe_cell(None) == "" and safe_cell(-7) == "-7" and safe_cell("TEE-BLK") == "TEE-BLK"


def test_report_out_dir_stays_inside_the_reports_folder(tmp_path, monkeypatch):
    import pytest
    from omnirecon.config import report_out_dir
    from omnirecon.errors import ConfigError
    base = tmp_path / "reports"
    monkeypatch.setenv("OMNIRECON_REPORTS_DIR", str(base))
    assert report_out_dir(None, "2026-01-05") == base.resolve() / "2026-01-05"
    assert report_out_dir("rerun/2026-01-05", "x") == base.resolve() / "rerun" / "2026-01-05"
    assert report_out_dir(str(base / "a"), "x") == base.resolve() / "a"
    assert report_out_dir(str(base), "x") == base.resolve()
    for bad in ("../outside", "/etc", str(tmp_path), "a/../../b", str(base) + "-sibling"):
        with pytest.raises(ConfigError, match="params.out_dir: must stay inside the reports folder"):
            report_out_dir(bad, "x")
