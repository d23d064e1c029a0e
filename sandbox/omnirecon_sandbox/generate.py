"""`generate:` deterministic synthetic catalogs (same seed, same data) appended to every configured system.

Channel quantities follow the scenario contract's expected-quantity rule (ERP on_hand - committed over the
channel's mapped locations, minus the channel's safety stock, floored at 0); `drift_fraction` of the
SKU-channel pairs are then moved away from it.
"""
from __future__ import annotations

import random
from datetime import timedelta

from omnirecon_contract.timeutil import iso, parse_ts

GEN_PREFIX = "GEN-"


def expand(data: dict) -> dict:
    spec = data.get("generate")
    if not spec or not spec.get("skus", 0) and not spec.get("orders", 0):
        return data
    _Generator(data, spec).run()
    return data


class _Generator:
    def __init__(self, data: dict, spec: dict):
        self.data, self.spec = data, spec
        self.rng = random.Random(spec.get("seed", 0))
        self.as_of = parse_ts(data.get("as_of", "now"))
        self.stamps = [iso(self.as_of - timedelta(minutes=m)) for m in range(0, 4 * 1440, 7)]
        self.settings = data.get("settings") or {}
        self.safety = {c: (self.settings.get("channels", {}).get(c) or {}).get("safety_stock", 0)
                       for c in ("shopify", "amazon", "walmart")}
        self.drift = float(spec.get("drift_fraction", 0.0))

    def pick(self, n: int) -> int:
        """0 <= i < n; random() is several times faster than randrange for bulk generation."""
        return int(self.rng.random() * n)

    def stamp(self, newest_minutes: int = 0) -> str:
        lo = newest_minutes // 7
        return self.stamps[lo + self.pick(len(self.stamps) - lo)]

    def run(self) -> None:
        erp = self.data.get("erp")
        locations = self._erp_locations(erp) if erp is not None else []
        mapping = self._mapping(locations)
        skus = self._erp_items(erp, locations, int(self.spec.get("skus", 0)))
        if "shopify" in self.data:
            self._shopify(skus, mapping)
        if "amazon" in self.data:
            self._amazon(skus, mapping)
        if "walmart" in self.data:
            self._walmart(skus, mapping)
        self._orders(skus, int(self.spec.get("orders", 0)))

    # -- ERP ----------------------------------------------------------------------------------------------
    def _erp_locations(self, erp: dict) -> list[str]:
        locs = erp.setdefault("locations", [])
        want = int(self.spec.get("locations", 1))
        next_id = max([l["id"] for l in locs] or [0]) + 1
        while len(locs) < want:
            locs.append({"id": next_id, "name": f"GEN-WH-{next_id}"})
            next_id += 1
        return [l["name"] for l in locs[:want]]

    def _mapping(self, locations: list[str]) -> dict:
        """channel -> [(ERP location, channel location key)] for the locations whose stock the channel shows."""
        out = {"shopify": [], "amazon": [], "walmart": []}
        for loc in self.settings.get("locations", []):
            if loc["erp"] not in locations:
                continue
            if loc.get("shopify"):
                out["shopify"].append((loc["erp"], loc["shopify"]))
            if loc.get("walmart_ship_node"):
                out["walmart"].append((loc["erp"], loc["walmart_ship_node"]))
            if loc.get("amazon") == "MFN":
                out["amazon"].append((loc["erp"], "MFN"))
        first = locations[:1]
        if first and not any(out.values()):
            shop_locs = (self.data.get("shopify") or {}).get("locations") or []
            out["shopify"] = [(first[0], shop_locs[0]["id"] if shop_locs else "gid://shopify/Location/9001")]
            out["walmart"] = [(first[0], "10001")]
            out["amazon"] = [(first[0], "MFN")]
        return out

    def _erp_items(self, erp: dict | None, locations: list[str], n: int) -> list[dict]:
        """-> [{"sku", "net": {location: on_hand - committed}}] for the generated SKUs."""
        rng, out = self.rng, []
        items = erp.setdefault("items", []) if erp is not None else None
        next_id = max([i["id"] for i in items or []] or [0]) + 1
        for i in range(n):
            sku = f"{GEN_PREFIX}{i + 1:06d}"
            net, locs = {}, []
            for loc in locations:
                on_hand = self.pick(200)
                committed = self.pick(min(5, on_hand) + 1)
                stamp = self.stamp(60)
                locs.append({"location": loc, "on_hand": on_hand, "committed": committed, "on_order": 0,
                             "last_modified": stamp})
                net[loc] = on_hand - committed
            if items is not None:
                items.append({"id": next_id + i, "itemid": sku, "type": "InvtPart", "isinactive": False,
                              "last_modified": self.stamp(60), "locations": locs})
            out.append({"sku": sku, "net": net})
        return out

    def _expected(self, row: dict, channel: str, erp_location: str) -> int:
        return max(0, row["net"].get(erp_location, self.pick(100)) - self.safety[channel])

    def _drifted(self, qty: int) -> int:
        if self.drift and self.rng.random() < self.drift:
            step = 1 + self.pick(9)
            return qty + (step if qty <= 10 or self.rng.random() < 0.5 else -step)
        return qty

    # -- channels -----------------------------------------------------------------------------------------
    def _shopify(self, skus: list[dict], mapping: dict) -> None:
        shop = self.data["shopify"]
        known = {l["id"] for l in shop.setdefault("locations", [])}
        for _, loc_id in mapping["shopify"]:
            if loc_id not in known:
                shop["locations"].append({"id": loc_id, "name": f"Location {loc_id.rsplit('/', 1)[-1]}", "active": True})
                known.add(loc_id)
        variants = shop.setdefault("variants", [])
        base = 10_000_000
        for i, row in enumerate(skus):
            levels = []
            for erp_loc, loc_id in mapping["shopify"]:
                available = self._drifted(self._expected(row, "shopify", erp_loc))
                committed = self.pick(3)
                levels.append({"location_id": loc_id, "available": available, "on_hand": available + committed,
                               "committed": committed, "updated_at": self.stamp(30)})
            variants.append({"id": f"gid://shopify/ProductVariant/{base + i}", "sku": row["sku"],
                             "inventory_item_id": f"gid://shopify/InventoryItem/{base + i}", "tracked": True,
                             "inventory_policy": "DENY", "levels": levels})

    def _amazon(self, skus: list[dict], mapping: dict) -> None:
        listings = self.data["amazon"].setdefault("listings", [])
        mfn = mapping["amazon"][:1]
        for i, row in enumerate(skus):
            qty = self._drifted(self._expected(row, "amazon", mfn[0][0])) if mfn else 0
            listings.append({"sku": row["sku"], "asin": f"B0GEN{i + 1:05d}", "product_type": "PRODUCT",
                             "quantity": qty, "status": ["BUYABLE", "DISCOVERABLE"], "issues": [],
                             "last_updated": self.stamp(30)})

    def _walmart(self, skus: list[dict], mapping: dict) -> None:
        items = self.data["walmart"].setdefault("items", [])
        for row in skus:
            for erp_loc, node in mapping["walmart"]:
                items.append({"sku": row["sku"], "ship_node": node,
                              "quantity": self._drifted(self._expected(row, "walmart", erp_loc)),
                              "published_status": "PUBLISHED", "lifecycle_status": "ACTIVE",
                              "last_updated": self.stamp(30)})

    # -- orders: each channel order has its ERP sales order, statuses in step --------------------------------
    def _orders(self, skus: list[dict], n: int) -> None:
        channels = [c for c in ("shopify", "amazon", "walmart") if c in self.data]
        if not n or not channels or not skus:
            return
        rng, erp = self.rng, self.data.get("erp")
        sales = erp.setdefault("sales_orders", []) if erp is not None else None
        so_id = max([s["id"] for s in sales or []] or [100000]) + 1
        flows = [("B", "UNFULFILLED", "Unshipped", "Acknowledged", 0),
                 ("F", "FULFILLED", "Shipped", "Shipped", 1),
                 ("G", "FULFILLED", "Shipped", "Delivered", 1),
                 ("C", "UNFULFILLED", "Canceled", "Cancelled", 0)]
        for i in range(n):
            channel = channels[i % len(channels)]
            sku = skus[rng.randrange(len(skus))]["sku"]
            qty = rng.randrange(1, 4)
            ns, shop_status, amz_status, wm_status, shipped = flows[rng.randrange(len(flows)) if rng.random() < 0.4 else 0]
            created = self.stamp(180)
            modified = created if rng.random() < 0.5 else self.stamp(5)
            modified = max(created, modified)
            if channel == "shopify":
                order_id = f"gid://shopify/Order/{20_000_000 + i}"
                self.data["shopify"].setdefault("orders", []).append({
                    "id": order_id, "name": f"#G{i + 1}", "created_at": created, "updated_at": modified,
                    "cancelled_at": modified if ns == "C" else None, "display_fulfillment_status": shop_status,
                    "display_financial_status": "VOIDED" if ns == "C" else "PAID",
                    "line_items": [{"sku": sku, "quantity": qty}]})
            elif channel == "amazon":
                order_id = f"{rng.randrange(111, 999)}-{i:07d}-{rng.randrange(10**7):07d}"
                self.data["amazon"].setdefault("orders", []).append({
                    "amazon_order_id": order_id, "purchase_date": created, "last_update_date": modified,
                    "order_status": amz_status, "fulfillment_channel": "MFN",
                    "items": [{"sku": sku, "quantity_ordered": qty, "quantity_shipped": qty * shipped}]})
            else:
                order_id = str(1_900_000_000_000 + i)
                self.data["walmart"].setdefault("orders", []).append({
                    "purchase_order_id": order_id, "customer_order_id": str(5_200_000_000_000 + i),
                    "order_date": created, "last_modified": modified,
                    "lines": [{"line_number": "1", "sku": sku, "quantity": qty, "status": wm_status}]})
            if sales is not None:
                so = {"id": so_id + i, "tranid": f"SOG{so_id + i}", "channel": channel, "channel_order_id": order_id,
                      "status": ns, "created": created, "last_modified": modified,
                      "lines": [{"sku": sku, "quantity": qty, "quantity_fulfilled": qty * shipped}],
                      "fulfillments": [{"id": 700000 + i, "shipped_at": modified}] if shipped else []}
                sales.append(so)
