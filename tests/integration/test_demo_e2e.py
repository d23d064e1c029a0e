"""`omnirecon demo` end to end: real Airflow (`dags test`), real sandbox over HTTP, real GX, SQLite ledger.

Checks the output contract (../shared/contracts/outputs.md) column for column, the story of the bundled
scenario, and the outage exit code.
"""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FINDINGS_COLS = ["run_id", "check", "severity", "channel", "sku", "location", "order_id", "expected", "observed",
                 "delta", "diagnosis", "action", "detail"]
CORRECTIONS_COLS = ["run_id", "channel", "sku", "channel_sku", "location", "from_qty", "to_qty", "status",
                    "idempotency_key", "attempts", "detail"]
pytestmark = pytest.mark.slow


def run_demo(tmp_path, *args, scenario=None, out_name="out"):
    out = tmp_path / out_name
    env = dict(os.environ, OMNIRECON_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.db'}", OMNIRECON_GX_DIR=str(tmp_path / "gx"))
    cmd = [sys.executable, "-m", "omnirecon.cli", "demo", "--out", str(out), *args]
    if scenario:
        cmd += ["--scenario", str(scenario)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    return r, out


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    r, out = run_demo(tmp)
    assert r.returncode == 0, f"demo failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r, out


def test_outputs_follow_the_contract(demo):
    r, out = demo
    for name in ("findings.csv", "corrections.csv", "report.html", "sandbox_state.json", "summary.json"):
        assert (out / name).exists(), name
    header, findings = read_csv(out / "findings.csv")
    assert header[:len(FINDINGS_COLS)] == FINDINGS_COLS
    header, corrections = read_csv(out / "corrections.csv")
    assert header[:len(CORRECTIONS_COLS)] == CORRECTIONS_COLS
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"run_id", "skus_checked", "findings", "corrections", "snapshots", "duration_s"}
    assert set(summary["snapshots"]) == {"erp", "shopify", "amazon", "walmart"}
    for snap in summary["snapshots"].values():
        assert set(snap) >= {"rows", "quarantined", "fetched_at"} and snap["rows"] > 0
    assert sum(summary["findings"].values()) == len(findings)
    assert sum(summary["corrections"].values()) == len(corrections)
    assert {f["run_id"] for f in findings} == {summary["run_id"]}
    assert "<html" in (out / "report.html").read_text().lower()
    assert "SKUs checked" in r.stdout and "findings.csv" in r.stdout     # the printed summary and paths


def _find(findings, **kw):
    return [f for f in findings if all(f[k] == v for k, v in kw.items())]


def test_the_demo_story(demo):
    _, out = demo
    _, findings = read_csv(out / "findings.csv")
    # Amazon alone shows 8 where the ERP implies 8 - 5 (per-SKU safety stock) = 3: an oversell, pushed.
    amz = _find(findings, check="inventory_drift", channel="amazon", sku="TEE-BLK-M")
    assert amz and amz[0]["severity"] == "critical" and amz[0]["expected"] == "3" and amz[0]["observed"] == "8"
    assert amz[0]["diagnosis"] == "L2_marketplace_listing" and amz[0]["action"] == "push"
    # Every channel still shows MUG-WHT's old count: the connector did not follow the ERP.
    mugs = _find(findings, check="inventory_drift", sku="MUG-WHT")
    assert {f["channel"] for f in mugs} == {"shopify", "amazon", "walmart"}
    assert {f["diagnosis"] for f in mugs} == {"L3_connector"}
    # Walmart reads the DROPSHIP location.
    assert _find(findings, check="inventory_drift", channel="walmart", sku="SOCK-GRY", diagnosis="location_mapping")
    # 119 units on Walmart: above the approval threshold.
    assert _find(findings, check="inventory_drift", channel="walmart", sku="BOOK-XL", action="approval")
    assert _find(findings, check="mapping", channel="shopify", sku="TEE-OLD-XL", diagnosis="sku_mapping")
    assert _find(findings, check="listing_state", channel="amazon", sku="BAG-TOTE")
    assert _find(findings, check="listing_state", channel="walmart", sku="HAT-BLU")
    assert _find(findings, check="order_missing", channel="amazon", order_id="111-0000000-0000001")
    assert _find(findings, check="low_stock", sku="LAMP-DSK")
    # No finding on the clean background catalogue.
    assert not [f for f in findings if f["sku"].startswith("BASIC-")]


def test_corrections_land_and_are_verified(demo):
    _, out = demo
    _, corrections = read_csv(out / "corrections.csv")
    by = {(c["channel"], c["sku"]): c for c in corrections}
    assert by[("amazon", "TEE-BLK-M")]["status"] == "verified"
    assert by[("amazon", "TEE-BLK-M")]["channel_sku"] == "TEE-BLK-M-FBM"
    assert by[("amazon", "TEE-BLK-M")]["to_qty"] == "3"
    assert by[("walmart", "BOOK-XL")]["status"] == "pending_approval"   # not approved in a plain demo
    assert len({c["idempotency_key"] for c in corrections}) == len(corrections)
    state = json.loads((out / "sandbox_state.json").read_text())
    listing = next(l for l in state["amazon"]["listings"] if l["sku"] == "TEE-BLK-M-FBM")
    assert listing["quantity"] == 3
    wm = next(i for i in state["walmart"]["items"] if i["sku"] == "BOOK-XL")
    assert wm["quantity"] == 0                                          # waits for a person


def test_outage_exits_3_and_pushes_nothing(tmp_path, demo_scenario_path):
    doc = yaml.safe_load(demo_scenario_path.read_text())
    doc["faults"] = [{"system": "erp", "operation": "*", "kind": "down"}]
    path = tmp_path / "outage.yaml"
    path.write_text(yaml.safe_dump(doc))
    r, out = run_demo(tmp_path, scenario=path)
    assert r.returncode == 3, f"{r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    _, corrections = read_csv(out / "corrections.csv")
    assert all(c["status"] not in ("verified", "applied") for c in corrections)
    state = json.loads((out / "sandbox_state.json").read_text())
    listing = next(l for l in state["amazon"]["listings"] if l["sku"] == "TEE-BLK-M-FBM")
    assert listing["quantity"] == 8                                    # untouched: the ERP was down
    _, findings = read_csv(out / "findings.csv")
    assert _find(findings, check="freshness", channel="erp")


def test_outputs_match_the_golden_files(demo):
    """`omnirecon demo` through Airflow gives the same findings and corrections as recorded (run ids,
    idempotency keys derived from them, timestamps and ages stripped): tests/golden/demo-airflow/."""
    from tests.integration.test_golden_outputs import compare, normalise
    _, out = demo
    stripped = ("run_id", "idempotency_key")
    compare("demo-airflow", {name: normalise((out / name).read_bytes(), stripped)
                             for name in ("findings.csv", "corrections.csv")})


def test_each_demo_starts_from_its_own_clean_state(demo):
    """A second demo in the same environment (same OMNIRECON_LEDGER_URL, same Airflow home) sees nothing of the
    first: its own empty ledger and clean Airflow metadata under --out/state, so the same scenario gives the same
    findings and corrections again (an open approval or in-flight order of the first run would change them)."""
    from tests.integration.test_golden_outputs import compare, normalise
    _, first = demo
    r, out = run_demo(first.parent, out_name="second")
    assert r.returncode == 0, f"{r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    state = out / "state"
    assert f"sqlite:///{state / 'ledger.db'}" in r.stdout and f"sqlite:///{state / 'airflow.db'}" in r.stdout
    with sqlite3.connect(state / "airflow.db") as db:
        runs = {dag for (dag,) in db.execute("SELECT dag_id FROM dag_run")}
        assert len(list(db.execute("SELECT 1 FROM dag_run"))) == 3
    assert runs == {"omnirecon_snapshot", "omnirecon_reconcile", "omnirecon_daily_report"}
    compare("demo-airflow", {name: normalise((out / name).read_bytes(), ("run_id", "idempotency_key"))
                             for name in ("findings.csv", "corrections.csv")})
