"""What the world reads from the retailer's settings and systems: SKU aliases and bundles, location mapping,
safety stock, the contract formula (scenario.md) for what an ERP-fed channel shows, and the platforms'
state-mutation methods the hops write through."""
from __future__ import annotations

import collections

LOCATION_KEY = {"shopify": "shopify", "amazon": "amazon", "walmart": "walmart_ship_node"}


class Catalogue:
    def __init__(self, sandbox):
        self.sb = sandbox
        settings = sandbox.data.get("settings") or {}
        self.channels = settings.get("channels") or {}
        self.overrides = {(o["channel"], o["sku"]): int(o["units"]) for o in settings.get("safety_stock_overrides", [])}
        self.to_channel, self.to_erp = {}, {}
        for a in settings.get("sku_aliases", []):
            units = int(a.get("units_per_channel_unit", 1))
            self.to_channel.setdefault((a["channel"], a["sku"]), (a["channel_sku"], units))
            self.to_erp.setdefault((a["channel"], a["channel_sku"]), (a["sku"], units))
        self.bundles = {b["sku"]: [(c["sku"], int(c["qty"])) for c in b["components"]] for b in settings.get("bundles", [])}
        self.in_bundles = collections.defaultdict(list)
        for sku, comps in self.bundles.items():
            for comp, _ in comps:
                self.in_bundles[comp].append(sku)
        # channel -> {channel location: [ERP locations]} (Amazon: MFN only, FBA stock is never pushed)
        self.locmap: dict = {}
        for ch, key in LOCATION_KEY.items():
            groups: dict = {}
            for loc in settings.get("locations", []):
                value = loc.get(key)
                if value is None or (ch == "amazon" and value != "MFN"):
                    continue
                groups.setdefault(str(value), []).append(loc["erp"])
            self.locmap[ch] = groups

    # -- names ---------------------------------------------------------------------------------------------------
    def erp_skus(self) -> list[str]:
        erp = self.sb.systems.get("erp")
        return list(erp.by_sku) if erp else []

    def channel_sku(self, channel: str, sku: str) -> str:
        return self.to_channel.get((channel, sku), (sku, 1))[0]

    def erp_sku(self, channel: str, channel_sku: str) -> str:
        return self.to_erp.get((channel, channel_sku), (channel_sku, 1))[0]

    def affected(self, erp_sku: str) -> list[str]:
        """The ERP SKU and every bundle it is a component of."""
        return [erp_sku] + self.in_bundles.get(erp_sku, [])

    def erp_lines(self, channel: str, lines) -> list[tuple[str, int]]:
        """Channel order lines -> ERP (sku, units), aliases converted and bundles expanded into components."""
        out = []
        for channel_sku, qty in lines:
            sku, per = self.to_erp.get((channel, channel_sku), (channel_sku, 1))
            units = int(qty) * per
            if sku in self.bundles:
                out.extend((comp, units * n) for comp, n in self.bundles[sku])
            else:
                out.append((sku, units))
        return out

    def mapped_erp_locations(self, channel: str) -> list[str]:
        return [erp for group in self.locmap.get(channel, {}).values() for erp in group]

    def erp_available(self, sku: str, location: str) -> int:
        erp = self.sb.systems.get("erp")
        return erp.available(sku, location) if erp else 0

    def safety(self, channel: str, sku: str) -> int:
        return self.overrides.get((channel, sku), int((self.channels.get(channel) or {}).get("safety_stock", 0)))

    # -- the contract formula -----------------------------------------------------------------------------------
    def expected(self, channel: str, sku: str, reads: str | None = None, safety: bool = True) -> list[tuple[str, int]]:
        """[(channel location, quantity)] an ERP -> channel hop writes for one ERP SKU."""
        channel_sku, per = self.to_channel.get((channel, sku), (sku, 1))
        out = []
        for loc, erp_locs in self.locmap.get(channel, {}).items():
            if not self.stocked(channel, channel_sku, loc):
                continue
            reading = [reads] if reads else erp_locs
            if sku in self.bundles:
                base = min((self._component(channel, comp, reading, safety) // n for comp, n in self.bundles[sku]),
                           default=0)
            else:
                base = self._component(channel, sku, reading, safety)
            out.append((loc, base // per))
        return out

    def _component(self, channel: str, sku: str, erp_locs: list, safety: bool) -> int:
        atp = sum(self.erp_available(sku, l) for l in erp_locs)
        return max(0, atp - (self.safety(channel, sku) if safety else 0))

    def relayed(self, src: str, dst: str, sku: str, safety: bool = True) -> list[tuple[str, int]]:
        """A channel -> channel hop: the source's quantity summed over its locations minus the target's safety
        stock, floored at 0, written at the target's first location that stocks the SKU."""
        dst_sku = self.channel_sku(dst, sku)
        loc = next((l for l in self.locmap.get(dst, {}) if self.stocked(dst, dst_sku, l)), None)
        if loc is None:
            return []
        qty = self.channel_quantity(src, self.channel_sku(src, sku))
        return [(loc, max(0, qty - (self.safety(dst, sku) if safety else 0)))]

    # -- channel state -------------------------------------------------------------------------------------------
    def stocked(self, channel: str, channel_sku: str, loc: str) -> bool:
        system = self.sb.systems.get(channel)
        if system is None:
            return False
        if channel == "shopify":
            v = system.by_sku.get(channel_sku)
            return v is not None and any(l["location_id"] == loc for l in v["levels"])
        if channel == "amazon":
            return channel_sku in system.listings
        return any(r["ship_node"] == loc for r in system._rows(channel_sku))

    def channel_quantity(self, channel: str, channel_sku: str) -> int:
        system = self.sb.systems[channel]
        if channel == "shopify":
            v = system.by_sku.get(channel_sku)
            return sum(int(l.get("available", 0)) for l in v["levels"]) if v else 0
        if channel == "amazon":
            listing = system.listings.get(channel_sku)
            return int(listing.get("quantity", 0)) if listing else 0
        return sum(int(r.get("quantity", 0)) for r in system._rows(channel_sku))

    def set_channel(self, channel: str, channel_sku: str, quantity: int, location: str | None = None) -> bool:
        """Write a channel's quantity through the platform's own write path (as its API does)."""
        system = self.sb.systems[channel]
        if channel == "shopify":
            v = system.by_sku.get(channel_sku)
            if v is None or not v["levels"]:
                return False
            return system.set_available(channel_sku, location or v["levels"][0]["location_id"], quantity)
        if channel == "amazon":
            return system.set_listing_quantity(channel_sku, quantity)
        return system.set_sku_quantity(channel_sku, location, quantity)

    def channel_order(self, channel: str, order_id: str):
        """-> (lines [(channel sku, qty)], cancelled) or None."""
        system = self.sb.systems[channel]
        o = system.orders_by_id.get(order_id)
        if o is None:
            return None
        if channel == "shopify":
            return [(l["sku"], int(l["quantity"])) for l in o.get("line_items", [])], bool(o.get("cancelled_at"))
        if channel == "amazon":
            return ([(i["sku"], int(i["quantity_ordered"])) for i in o.get("items", [])],
                    o.get("order_status") == "Canceled")
        return ([(l["sku"], int(l["quantity"])) for l in o.get("lines", [])],
                any(l.get("status") == "Cancelled" for l in o.get("lines", [])))

    def sync_order(self, channel: str, order_id: str) -> int | None:
        """An orders hop: the channel order becomes (or cancels) an ERP sales order. -> units carried."""
        erp, found = self.sb.systems.get("erp"), self.channel_order(channel, order_id)
        if erp is None or found is None:
            return None
        lines, cancelled = found
        erp_lines = self.erp_lines(channel, lines)
        if order_id in erp.so_by_channel_order:
            if cancelled:
                erp.cancel_sales_order(order_id)
        elif not cancelled:
            locations = self.mapped_erp_locations(channel)
            erp.add_sales_order(channel, order_id, [{"sku": s, "quantity": u} for s, u in erp_lines],
                                locations[0] if locations else next(iter(erp.loc_ids), ""))
        return sum(u for _, u in erp_lines)

    def ship_channel_order(self, channel: str, order_id: str) -> bool:
        system = self.sb.systems[channel]
        return system.fulfil_order(order_id) if channel == "shopify" else system.ship_order(order_id)
