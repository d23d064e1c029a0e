"""Walmart Marketplace: inventories + items for the catalog, orders by lastModified; writes are PUT /v3/inventory
per SKU and ship node, or an MP_INVENTORY feed for large sets."""
from __future__ import annotations

from datetime import datetime

from omnirecon.adapters.base import SystemAdapter, WriteResult, ref_value
from omnirecon.adapters.walmart import notifications as nt
from omnirecon.model import normalize as nz

FEED_MAX_ITEMS = 10_000            # MP_INVENTORY feed


def _ship_node(c) -> str:
    return str(ref_value(c, "ship_node", "shipNode", default=c.location))


class WalmartAdapter(SystemAdapter):
    platform = "walmart"
    conn_type = "omnirecon_walmart"
    hook_path = "omnirecon.hooks.walmart.WalmartHook"
    inclusive_orders_end = True       # lastModifiedEndDate includes its end, whole seconds
    location_key = "walmart_ship_node"
    normalizers = {"inventory": nz.walmart_inventory, "listings": nz.walmart_listings, "orders": nz.walmart_orders}
    write_paths = {"put": "per_sku", "feed": "feed"}
    feed_max_items = FEED_MAX_ITEMS
    channel_role = "marketplace"
    silent_kinds = frozenset({"inventory"})     # INVENTORY_OOS only: a quantity above zero is read back

    def notification_source(self, conn):
        """password = the client secret; extra `webhook_auth_method` (HMAC | BASIC_AUTH), `webhook_auth_header`,
        `webhook_user`, `webhook_password`, as given in the subscriptions' authDetails."""
        if conn is None or not conn.password:
            return None
        x = conn.extra_dejson or {}
        return nt.WalmartSource(conn.password, x.get("webhook_auth_method", "HMAC"),
                                x.get("webhook_auth_header", "Authorization"), x.get("webhook_user"),
                                x.get("webhook_password"), name=self.system)

    def ensure_subscriptions(self, make_hook, conn, receiver_base_url: str, sqs_queue_arn: str | None = None):
        if conn is None or not conn.password:
            return []
        header = (conn.extra_dejson or {}).get("webhook_auth_header", "Authorization")
        subs = nt.WalmartSubscriptions(make_hook(), conn.password, header)
        return subs.ensure(f"{receiver_base_url}/notifications/{self.system}")

    def notification_changes(self, topic, doc, when, *, erp_sku, item_skus=None) -> list:
        return nt.changes(self.system, topic, doc, when, erp_sku)

    def quantity_reader(self, hook, settings):
        nodes = [str(loc[self.location_key]) for loc in settings.mapped_locations(self.location_key)]
        return nt.quantity_reader(self.system, hook, nodes, lambda sku: settings.alias(sku, self.system)[0])

    def fetch_catalog(self, hook) -> dict:
        return hook.fetch_inventory_snapshot()

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        return {"orders": hook.fetch_orders(start, end)}, end

    def batch_method(self, n: int, per_sku_max: int, per_sku_batch: int) -> tuple[str, int]:
        return ("put", per_sku_batch) if n <= per_sku_max else ("feed", FEED_MAX_ITEMS)

    def read_one(self, hook, c) -> int | None:
        return hook.read_inventory(c.channel_sku, _ship_node(c))

    def write_one(self, hook, c) -> WriteResult:
        hook.update_inventory(c.channel_sku, _ship_node(c), c.to_qty)
        return WriteResult(True, f"{self.system} accepted the update")

    def submit_feed(self, hook, rows: list) -> str:
        items = [{"sku": c.channel_sku, "ship_node": _ship_node(c), "amount": c.to_qty} for c in rows]
        return str(hook.submit_inventory_feed(items))

    def feed_result(self, hook, feed_id: str) -> dict:
        return hook.feed_status(feed_id)
