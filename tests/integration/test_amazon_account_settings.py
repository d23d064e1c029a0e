"""Every Amazon call, read or write, is built from the retailer's per-account settings (issue 12): with the
retailer on the UK marketplace and a connection that names no marketplace, a correction is read back and patched
in A1F83G8C2ARO7P (the sandbox's write log records the query string that says so); a seller that does not sell in
the marketplace a call names is refused by the sandbox, as Amazon refuses it, and nothing is written."""
from __future__ import annotations

import copy

import pytest
from sqlalchemy import select

from omnirecon.config import settings_from_dict
from omnirecon.hooks import hook_from_fields
from omnirecon.ledger import models as m
from omnirecon.remediation.plan import plan_corrections
from omnirecon.remediation.push import push_batch
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger

UK, US = "A1F83G8C2ARO7P", "ATVPDKIKX0DER"
SELLER = "A1SELLERUK"
SKUS = ["SKU-A", "SKU-B"]


def _scenario():
    return from_dict({
        "version": 1, "name": "amazon-uk", "as_of": "now",
        "settings": {"locations": [{"erp": "WH-EAST", "amazon": "MFN"}],
                     "channels": {"amazon": {"safety_stock": 0, "seller_id": SELLER, "marketplace_id": UK}}},
        "erp": {"account": "1234567_SB1", "locations": [{"id": 1, "name": "WH-EAST"}], "sales_orders": [],
                "items": [{"id": 500 + n, "itemid": sku, "type": "InvtPart", "locations": [
                    {"location": "WH-EAST", "on_hand": 10, "committed": 0}]} for n, sku in enumerate(SKUS)]},
        "amazon": {"seller_id": SELLER, "marketplace_id": UK, "fba_inventory": [], "orders": [],
                   "listings": [{"sku": sku, "asin": f"B0UK{n:06d}", "product_type": "SHIRT", "quantity": 3,
                                 "status": ["BUYABLE", "DISCOVERABLE"]} for n, sku in enumerate(SKUS)]},
    })


def _push(tmp_path, sb, marketplace_in_settings: str):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, SKUS)
    add_finding(ledger, channel="amazon", sku="SKU-A", from_qty=3, to_qty=7, ref={"product_type": "SHIRT"})
    settings = settings_from_dict({"locations": [{"erp": "WH-EAST", "amazon": "MFN"}], "max_correction_fraction": 1.0,
                                   "channels": {"amazon": {"safety_stock": 0, "seller_id": SELLER,
                                                           "marketplace_id": marketplace_in_settings}}},
                                  {"mode": "apply"})
    fields = copy.deepcopy(sb.connections()["omnirecon_amazon"])
    for name in ("marketplace_id", "seller_id"):        # the connection names no account: the settings do
        fields["extra"].pop(name, None)
    fields["extra"]["time_scale"] = 0.05
    plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    for batch in plan.batches:
        push_batch(ledger, settings, batch, hook_factory=lambda channel: hook_from_fields(channel, fields))
    with ledger.session() as s:
        return s.scalars(select(m.Correction).where(m.Correction.sku == "SKU-A")).one()


@pytest.fixture
def sandbox():
    with Sandbox(_scenario(), time_scale=0.05) as sb:
        yield sb


def test_a_uk_retailer_is_read_and_written_in_the_uk_marketplace(tmp_path, sandbox):
    c = _push(tmp_path, sandbox, UK)
    assert (c.status, c.to_qty) == ("verified", 7), c.detail
    [write] = [w for w in sandbox.writes() if w["operation"] == "patchListingsItem"]
    assert f"marketplaceIds={UK}" in write["query"] and US not in write["query"] and write["applied"]
    assert {x["sku"]: x["quantity"] for x in sandbox.state()["amazon"]["listings"]}["SKU-A"] == 7


def test_a_marketplace_the_seller_does_not_sell_in_is_refused_and_nothing_is_written(tmp_path, sandbox):
    c = _push(tmp_path, sandbox, US)
    assert c.status == "failed" and "does not sell in ATVPDKIKX0DER" in c.detail, c.detail
    assert not [w for w in sandbox.writes() if w["applied"]]
    assert {x["sku"]: x["quantity"] for x in sandbox.state()["amazon"]["listings"]}["SKU-A"] == 3
