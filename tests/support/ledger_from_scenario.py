"""TEST SUPPORT ONLY: land a scenario's systems in a ledger as canonical records, without the sandbox.

The real path is hooks -> omnirecon.model.normalize -> ledger; this module maps the scenario format
straight to canonical records so the checks can be tested before (and independently of) the connectors.

Extra scenario keys understood here (x_ keys are allowed by the schema):
  x_history:   [{at: -2h, erp: {...}, shopify: {...}, ...}]  earlier states, landed first (oldest first)
  x_snapshots: {system: {status: failed|unusable, fetched_at: -3h, kinds: [inventory, ...]}}
  x_api_events: [{system, operation, status_code, outcome, message, at}]
"""
from __future__ import annotations

import copy

from omnirecon.model.canonical import (InventoryRecord, ListingRecord, OrderRecord, Quarantined, amazon_status,
                                       netsuite_status, shopify_status, walmart_status)
from omnirecon_contract.scenario import Scenario, from_dict
from omnirecon.timeutil import parse_ts


def _t(v):
    return parse_ts(v) if v else None


def erp_records(b: dict) -> dict:
    inv, items, orders = [], [], []
    for it in b.get("items", []):
        items.append(ListingRecord("erp", it["itemid"], "inactive" if it.get("isinactive") else "active",
                                   raw_status=it.get("type", ""), item_type=it.get("type"),
                                   is_inactive=bool(it.get("isinactive")), updated_at=_t(it.get("last_modified")),
                                   ref={"id": it.get("id")}))
        for loc in it.get("locations", []):
            on_hand, committed = loc.get("on_hand", 0), loc.get("committed", 0)
            inv.append(InventoryRecord("erp", it["itemid"], loc["location"], available=on_hand - committed,
                                       on_hand=on_hand, committed=committed, on_order=loc.get("on_order", 0),
                                       updated_at=_t(loc.get("last_modified") or it.get("last_modified")),
                                       ref={"item": it.get("id")}))
    for so in b.get("sales_orders", []):
        ships = [_t(f.get("shipped_at")) for f in so.get("fulfillments", [])]
        orders.append(OrderRecord("erp", so["channel_order_id"], so["channel"],
                                  netsuite_status(so["status"], fulfilled=bool(ships)), raw_status=so["status"],
                                  created_at=_t(so.get("created")), updated_at=_t(so.get("last_modified")),
                                  erp_ref=so.get("tranid"), fulfilled_at=max(ships) if ships else None,
                                  lines=[{"sku": l["sku"], "quantity": l["quantity"],
                                          "shipped": l.get("quantity_fulfilled", 0)} for l in so.get("lines", [])]))
    return {"inventory": inv, "listings": items, "orders": orders}


def shopify_records(b: dict) -> dict:
    inv, listings, orders = [], [], []
    for v in b.get("variants", []):
        tracked = v.get("tracked", True)
        listings.append(ListingRecord("shopify", v["sku"], "active" if tracked else "untracked",
                                      inventory_policy=v.get("inventory_policy", "DENY"), tracked=tracked,
                                      ref={"variant_id": v["id"], "inventory_item_id": v.get("inventory_item_id")}))
        for lv in v.get("levels", []):
            inv.append(InventoryRecord("shopify", v["sku"], lv["location_id"], available=lv.get("available"),
                                       on_hand=lv.get("on_hand"), committed=lv.get("committed"),
                                       updated_at=_t(lv.get("updated_at")),
                                       ref={"inventory_item_id": v.get("inventory_item_id"), "location_id": lv["location_id"]}))
    for o in b.get("orders", []):
        orders.append(OrderRecord("shopify", o["id"], "shopify",
                                  shopify_status(o.get("display_fulfillment_status", "UNFULFILLED"), o.get("cancelled_at")),
                                  raw_status=o.get("display_fulfillment_status", ""), created_at=_t(o.get("created_at")),
                                  updated_at=_t(o.get("updated_at")),
                                  lines=[{"sku": l["sku"], "quantity": l["quantity"], "shipped": 0} for l in o.get("line_items", [])]))
    return {"inventory": inv, "listings": listings, "orders": orders}


def amazon_records(b: dict) -> dict:
    inv, listings, orders = [], [], []
    for li in b.get("listings", []):
        status = li.get("status", [])
        errors = [i for i in li.get("issues", []) if i.get("severity") == "ERROR"]
        state = "suppressed" if errors else ("active" if "BUYABLE" in status else "inactive")
        listings.append(ListingRecord("amazon", li["sku"], state, raw_status=",".join(status), issues=li.get("issues", []),
                                      updated_at=_t(li.get("last_updated")), ref={"asin": li.get("asin")}))
        inv.append(InventoryRecord("amazon", li["sku"], "MFN", available=li.get("quantity", 0),
                                   updated_at=_t(li.get("last_updated")),
                                   ref={"asin": li.get("asin"), "product_type": li.get("product_type")}))
    for f in b.get("fba_inventory", []):
        inv.append(InventoryRecord("amazon", f["sku"], "FBA", available=f.get("fulfillable_quantity", 0),
                                   reserved=f.get("reserved_quantity"), on_order=f.get("inbound_quantity"),
                                   updated_at=_t(f.get("last_updated")), ref={"asin": f.get("asin")}))
    for o in b.get("orders", []):
        orders.append(OrderRecord("amazon", o["amazon_order_id"], "amazon", amazon_status(o["order_status"]),
                                  raw_status=o["order_status"], created_at=_t(o.get("purchase_date")),
                                  updated_at=_t(o.get("last_update_date")), fulfillment_channel=o.get("fulfillment_channel"),
                                  lines=[{"sku": i["sku"], "quantity": i["quantity_ordered"],
                                          "shipped": i.get("quantity_shipped", 0)} for i in o.get("items", [])]))
    return {"inventory": inv, "listings": listings, "orders": orders}


def walmart_records(b: dict) -> dict:
    inv, listings, orders = [], [], []
    for it in b.get("items", []):
        if it.get("lifecycle_status", "ACTIVE") != "ACTIVE":
            state = "inactive"
        elif it.get("published_status", "PUBLISHED") != "PUBLISHED":
            state = "unpublished"
        else:
            state = "active"
        listings.append(ListingRecord("walmart", it["sku"], state, raw_status=it.get("published_status", ""),
                                      updated_at=_t(it.get("last_updated"))))
        inv.append(InventoryRecord("walmart", it["sku"], str(it.get("ship_node", "")), available=it.get("quantity", 0),
                                   updated_at=_t(it.get("last_updated")), ref={"ship_node": str(it.get("ship_node", ""))}))
    for o in b.get("orders", []):
        orders.append(OrderRecord("walmart", o["purchase_order_id"], "walmart",
                                  walmart_status([l["status"] for l in o.get("lines", [])]),
                                  created_at=_t(o.get("order_date")), updated_at=_t(o.get("last_modified")),
                                  lines=[{"sku": l["sku"], "quantity": l["quantity"],
                                          "shipped": l["quantity"] if l["status"] in ("Shipped", "Delivered") else 0}
                                         for l in o.get("lines", [])]))
    return {"inventory": inv, "listings": listings, "orders": orders}


CONVERTERS = {"erp": erp_records, "shopify": shopify_records, "amazon": amazon_records, "walmart": walmart_records}


def land_state(ledger, data: dict, *, run_id: str, fetched_at, overrides: dict | None = None) -> dict:
    """Land every system block of resolved scenario data; returns {(system, kind): Snapshot}."""
    ledger.begin_run(run_id, "snapshot")
    out = {}
    for system, convert in CONVERTERS.items():
        if system not in data:
            continue
        ov = (overrides or {}).get(system, {})
        for kind, records in convert(data[system]).items():
            if ov.get("kinds") and kind not in ov["kinds"]:
                status = None
            else:
                status = ov.get("status")
            at = parse_ts(ov["fetched_at"], fetched_at) if ov.get("fetched_at") else fetched_at
            stats = {"fetched_at": at, "started_at": at}
            if status == "failed":
                out[(system, kind)] = ledger.fail_snapshot(run_id=run_id, system=system, kind=kind,
                                                           error=f"{system} {kind}: HTTP 503 after 3 retries", stats=stats)
            elif status == "unusable":
                bad = [Quarantined(i, f"row{i}", "missing required field") for i in range(len(records) + 1)]
                out[(system, kind)] = ledger.land_snapshot(run_id=run_id, system=system, kind=kind, records=records,
                                                           quarantined=bad, stats=stats)
            else:
                out[(system, kind)] = ledger.land_snapshot(run_id=run_id, system=system, kind=kind, records=records,
                                                           quarantined=[], stats=stats)
    return out


def land_scenario(ledger, scenario: Scenario, run_id: str = "snapshot/test") -> dict:
    """Land x_history states (oldest first), then the scenario's current state, then x_api_events."""
    raw = scenario.raw
    for i, past in enumerate(raw.get("x_history", [])):
        doc = {k: v for k, v in raw.items() if k not in ("erp", "shopify", "amazon", "walmart") and not k.startswith("x_")}
        doc.update({k: copy.deepcopy(v) for k, v in past.items() if k in CONVERTERS})
        old = from_dict(doc, as_of=scenario.as_of)
        land_state(ledger, old.data, run_id=f"{run_id}/history{i}", fetched_at=parse_ts(past.get("at", "-1h"), scenario.as_of))
    snaps = land_state(ledger, scenario.data, run_id=run_id, fetched_at=scenario.as_of,
                       overrides=_resolve_overrides(raw.get("x_snapshots", {}), scenario.as_of))
    for ev in raw.get("x_api_events", []):
        ledger.api_event(system=ev["system"], operation=ev["operation"], outcome=ev.get("outcome", "error"),
                         status_code=ev.get("status_code"), message=ev.get("message"), run_id=run_id,
                         at=parse_ts(ev.get("at", "now"), scenario.as_of))
    return snaps


def _resolve_overrides(ov: dict, as_of) -> dict:
    return {s: dict(v, fetched_at=parse_ts(v["fetched_at"], as_of)) if v.get("fetched_at") else v for s, v in ov.items()}
