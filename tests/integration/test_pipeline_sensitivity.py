"""A change of one quantity in the scenario changes the findings accordingly (sandbox over HTTP,
real hooks, real GX), and a clean re-run of a corrected world finds nothing new to push."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import yaml

from omnirecon_contract import scenario
from omnirecon.config import settings_from_dict
from omnirecon.runner import hooks_from_connections, run_cycle
from omnirecon_sandbox import Sandbox
from omnirecon.timeutil import utcnow

SCALE = 0.01
INVENTORY_WRITES = {"inventorySetQuantities", "patchListingsItem", "createFeed", "updateInventoryForAnItem",
                    "updateBulkInventory"}


def cycle(doc, ledger, run_id, **kw):
    sc = scenario.from_dict(doc)
    settings = settings_from_dict(sc.settings)
    with Sandbox(sc, time_scale=SCALE) as sb:
        hooks = hooks_from_connections(sb.connections(), time_scale=SCALE)
        now = utcnow()
        out = run_cycle(ledger, settings, hooks, run_id=run_id, window_start=now - timedelta(days=15), window_end=now, **kw)
        out["state"] = sb.state()
        out["writes"] = [w for w in sb.writes() if w["operation"] in INVENTORY_WRITES]
    return out


def keys(result, check="inventory_drift"):
    return {(f["channel"], f["sku"]) for f in result["findings_rows"] if f["check"] == check}


@pytest.fixture(scope="module")
def demo_doc(demo_scenario_path):
    return yaml.safe_load(demo_scenario_path.read_text())


def test_one_quantity_changes_the_findings(demo_doc, tmp_path):
    base = cycle(demo_doc, _ledger(tmp_path / "a.db"), "base", mode="dry-run")
    assert ("walmart", "BASIC-001") not in keys(base)
    assert ("shopify", "JEANS-32") in keys(base)

    doc = copy.deepcopy(demo_doc)
    wm = next(i for i in doc["walmart"]["items"] if i["sku"] == "BASIC-001")
    wm["quantity"] += 4                                   # Walmart now oversells BASIC-001 by 4
    shop = next(v for v in doc["shopify"]["variants"] if v["sku"] == "JEANS-32")
    shop["levels"][0]["available"] = 15                   # and Shopify's JEANS-32 now agrees with the ERP
    changed = cycle(doc, _ledger(tmp_path / "b.db"), "changed", mode="dry-run")

    assert keys(changed) - keys(base) == {("walmart", "BASIC-001")}
    assert keys(base) - keys(changed) == {("shopify", "JEANS-32")}
    f = next(f for f in changed["findings_rows"] if (f["channel"], f["sku"]) == ("walmart", "BASIC-001"))
    assert f["severity"] == "critical" and int(f["delta"]) == 4


def test_dry_run_pushes_nothing_and_apply_pushes_once(demo_doc, tmp_path):
    led = _ledger(tmp_path / "c.db")
    dry = cycle(demo_doc, led, "dry", mode="dry-run")
    assert dry["writes"] == []
    assert dry["corrections"].get("dry_run", 0) >= 5
    applied = cycle(demo_doc, led, "apply", mode="apply")
    assert applied["corrections"].get("verified", 0) >= 5
    pushed = [w for w in applied["writes"] if w.get("applied", True)]
    targets = [(w["system"], w["key"]) for w in pushed]
    assert len(targets) == len(set(targets)), "a correction was written twice"


def _ledger(path):
    from omnirecon.ledger import Ledger
    led = Ledger(f"sqlite:///{path}")
    led.migrate()
    return led
