"""Builders shared by the remediation/report unit tests (ledger rows, settings, fake channel hooks)."""
from __future__ import annotations

import hashlib
from datetime import timedelta

from omnirecon.config import settings_from_dict
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.timeutil import utcnow

RUN = "omnirecon_reconcile/manual__2026-01-05T10:00:00+00:00"
SETTINGS = {
    "locations": [
        {"erp": "WH-EAST", "shopify": "gid://shopify/Location/1001", "walmart_ship_node": "10001", "amazon": "MFN"},
        {"erp": "FBA-US", "amazon": "FBA"},
    ],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
    "approval_threshold_units": 50,
    "max_correction_fraction": 0.5,
    "freshness_minutes": 15,
}
CHANNEL_LOCATION = {"shopify": "gid://shopify/Location/1001", "amazon": "MFN", "walmart": "10001"}


def make_ledger(tmp_path) -> Ledger:
    ledger = Ledger("sqlite:///" + str(tmp_path / "l.db"))
    ledger.migrate()
    return ledger


def make_settings(runtime: dict | None = None, **over):
    return settings_from_dict({**SETTINGS, **over}, runtime or {})


def add_run(ledger, run_id=RUN, kind="reconcile", stats=None, started_at=None, status="success"):
    dag_id, _, airflow_run_id = run_id.partition("/")
    with ledger.session() as s:
        s.add(m.Run(id=run_id, kind=kind, dag_id=dag_id, airflow_run_id=airflow_run_id or None, status=status,
                    started_at=started_at or utcnow(), stats=stats or {"skus_checked": 100}))
    return run_id


def add_snapshot(ledger, system, skus=(), kind="inventory", status="complete", age_minutes=1, run_id="snap/1",
                 location=None, quantities=None):
    with ledger.session() as s:
        if s.get(m.Run, run_id) is None:
            s.add(m.Run(id=run_id, kind="snapshot", status="success"))
        fetched = utcnow() - timedelta(minutes=age_minutes)
        snap = m.Snapshot(run_id=run_id, system=system, kind=kind, status=status, fetched_at=fetched,
                          finished_at=fetched, rows_in=len(skus), rows_valid=len(skus))
        s.add(snap)
        s.flush()
        for sku in skus:
            if kind == "inventory":
                s.add(m.InventoryRow(snapshot_id=snap.id, system=system, sku=sku,
                                     location=location or CHANNEL_LOCATION.get(system, "WH-EAST"),
                                     available=(quantities or {}).get(sku, 5), updated_at=fetched))
            elif kind == "listings":
                s.add(m.ListingRow(snapshot_id=snap.id, system=system, sku=sku, state="active", item_type="InvtPart",
                                   is_inactive=False))
        return snap.id


def fresh_snapshots(ledger, skus, channels=("shopify", "amazon", "walmart")):
    ids = {"erp": add_snapshot(ledger, "erp", skus, location="WH-EAST")}
    for ch in channels:
        ids[ch] = add_snapshot(ledger, ch, skus)
    return ids


def fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def add_finding(ledger, run_id=RUN, *, channel="shopify", sku="SKU-1", check="inventory_drift", action="push",
                from_qty=8, to_qty=5, snapshot_id=None, severity="warning", diagnosis="L3_connector",
                order_id=None, push=True, ref=None, channel_location=None, channel_sku=None, location="WH-EAST",
                detail=None, evidence=None):
    ev = dict(evidence or {})
    if push and check == "inventory_drift":
        ev["push"] = {"channel_sku": channel_sku or sku, "channel_location": channel_location or CHANNEL_LOCATION[channel],
                      "ref": ref or default_ref(channel, sku), "snapshot_id": snapshot_id,
                      "from_qty": from_qty, "to_qty": to_qty}
    with ledger.session() as s:
        f = m.Finding(run_id=run_id, fingerprint=fingerprint(check, channel, sku, order_id), check=check,
                      severity=severity, channel=channel, sku=sku if check != "order_missing" else None,
                      location=location if check == "inventory_drift" else None, order_id=order_id,
                      expected=str(to_qty) if check == "inventory_drift" else None,
                      observed=str(from_qty) if check == "inventory_drift" else None,
                      delta=(from_qty - to_qty) if check == "inventory_drift" else None, diagnosis=diagnosis,
                      action=action, detail=detail or f"{channel} shows {from_qty}, ERP implies {to_qty}", evidence=ev)
        s.add(f)
        s.flush()
        return f


def default_ref(channel, sku):
    if channel == "shopify":
        return {"inventory_item_id": f"gid://shopify/InventoryItem/{sku}", "location_id": CHANNEL_LOCATION["shopify"]}
    if channel == "amazon":
        return {"product_type": "SHIRT", "asin": "B0TEST"}
    return {"ship_node": CHANNEL_LOCATION["walmart"]}


# -- fake hooks with the real hooks' method signatures (unit tests only) ------------------------------
class FakeShopify:
    def __init__(self, levels: dict, drop_writes=False):
        self.levels = dict(levels)          # {(item, loc): qty}
        self.drop_writes = drop_writes
        self.calls = []
        self.seen_keys = {}
        self.audit = None

    def set_available(self, changes, idempotency_key, reason="correction", reference_document_uri=None):
        self.calls.append({"changes": changes, "key": idempotency_key})
        if self.audit:
            self.audit(operation="inventorySetQuantities", outcome="called", idempotency_key=idempotency_key[:64],
                       request={"n": len(changes)})
        if idempotency_key in self.seen_keys:
            return self.seen_keys[idempotency_key]
        errors = []
        for n, c in enumerate(changes):
            if self.levels.get((c["inventory_item_id"], c["location_id"])) != c["change_from"]:
                errors.append({"code": "CHANGE_FROM_QUANTITY_STALE", "field": ["input", "quantities", str(n),
                                                                                "changeFromQuantity"],
                               "message": "stale"})
        if not errors and not self.drop_writes:
            for c in changes:
                self.levels[(c["inventory_item_id"], c["location_id"])] = c["quantity"]
        res = {"ok": not errors, "user_errors": errors, "raw": {}}
        self.seen_keys[idempotency_key] = res
        return res

    def read_available(self, pairs):
        return {p: self.levels[p] for p in pairs if p in self.levels}


class FakeAmazon:
    def __init__(self, quantities: dict, drop_writes=False, crash_after_write=False):
        self.q = dict(quantities)
        self.drop_writes = drop_writes
        self.crash_after_write = crash_after_write
        self.writes = []
        self.audit = None

    def read_quantity(self, sku):
        return self.q.get(sku)

    def patch_quantity(self, sku, product_type, quantity):
        self.writes.append((sku, product_type, quantity))
        if not self.drop_writes:
            self.q[sku] = quantity
        if self.crash_after_write:
            self.crash_after_write = False
            raise KeyboardInterrupt("worker killed")
        return {"status": "ACCEPTED", "submission_id": f"sub-{len(self.writes)}", "issues": []}

    def submit_listings_feed(self, messages):
        self.writes.append(("feed", len(messages)))
        for msg in messages:
            self.q[msg["sku"]] = msg["patches"][0]["value"][0]["quantity"]
        return "feed-1"

    def feed_result(self, feed_id):
        return {"processingStatus": "DONE", "issues": []}


class FakeWalmart:
    def __init__(self, quantities: dict):
        self.q = dict(quantities)        # {(sku, node): qty}
        self.writes = []
        self.audit = None

    def read_inventory(self, sku, ship_node):
        return self.q.get((sku, ship_node))

    def update_inventory(self, sku, ship_node, amount):
        self.writes.append((sku, ship_node, amount))
        self.q[(sku, ship_node)] = amount
        return {"sku": sku, "quantity": {"unit": "EACH", "amount": amount}}
