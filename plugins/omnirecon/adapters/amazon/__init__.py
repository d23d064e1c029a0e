"""Amazon SP-API: listings report (+ FBA summaries) for the catalog, getOrders for orders; writes are
patchListingsItem per SKU or a JSON_LISTINGS_FEED for large sets. The seller and marketplace are per account."""
from __future__ import annotations

from datetime import datetime

from omnirecon.adapters.amazon import notifications as nt
from omnirecon.adapters.base import SystemAdapter, WriteResult, ref_value
from omnirecon.model import normalize as nz

FEED_MAX_MESSAGES = 25_000         # JSON_LISTINGS_FEED


def _product_type(c) -> str | None:
    return ref_value(c, "product_type", "productType")


class AmazonAdapter(SystemAdapter):
    platform = "amazon"
    conn_type = "omnirecon_amazon"
    hook_path = "omnirecon.hooks.amazon.AmazonSPAPIHook"
    account_extras = ("seller_id", "marketplace_id")
    inclusive_orders_end = True       # LastUpdatedBefore is "before (or at)", whole seconds
    location_key = "amazon"
    normalizers = {"inventory": nz.amazon_inventory, "listings": nz.amazon_listings, "orders": nz.amazon_orders}
    write_paths = {"patch": "per_sku", "feed": "feed"}
    feed_max_items = FEED_MAX_MESSAGES
    channel_role = "marketplace"

    def ensure_subscriptions(self, make_hook, conn, receiver_base_url: str, sqs_queue_arn: str | None = None):
        """SP-API delivers to an SQS queue (the sqs-consumer stores it), not to the receiver: needs its ARN."""
        return nt.AmazonSubscriptions(make_hook()).ensure(sqs_queue_arn) if sqs_queue_arn else []

    def notification_changes(self, topic, doc, when, *, erp_sku, item_skus=None) -> list:
        return nt.changes(self.system, topic, doc, when, erp_sku)

    def fetch_catalog(self, hook) -> dict:
        return hook.fetch_listings()

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        raw = hook.fetch_orders(start, end)
        return raw, raw["window_end"]      # SP-API serves nothing newer than 2 minutes

    def push_block(self, settings, channel_location: str, erp_location: str | None) -> str | None:
        fba = {loc["erp"] for loc in settings["locations"] if str(loc.get(self.location_key, "")).upper() == "FBA"}
        if channel_location.upper() == "FBA" or (erp_location or "") in fba:
            return "FBA stock is held by Amazon: compared, never pushed"
        return None

    def batch_method(self, n: int, per_sku_max: int, per_sku_batch: int) -> tuple[str, int]:
        return ("patch", per_sku_batch) if n <= per_sku_max else ("feed", FEED_MAX_MESSAGES)

    def read_one(self, hook, c) -> int | None:
        return hook.read_quantity(c.channel_sku)

    def write_one(self, hook, c) -> WriteResult:
        res = hook.patch_quantity(c.channel_sku, _product_type(c), c.to_qty) or {}
        submission = res.get("submission_id")
        if res.get("status") not in ("ACCEPTED", "VALID"):
            issues = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in res.get("issues") or [])
            return WriteResult(False, f"listing update {res.get('status')}: {issues}".strip(), submission)
        return WriteResult(True, f"{self.system} accepted the update", submission)

    def submit_feed(self, hook, rows: list) -> str:
        messages = [{"messageId": n, "sku": c.channel_sku, "operationType": "PATCH", "productType": _product_type(c),
                     "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                  "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": c.to_qty}]}]}
                    for n, c in enumerate(rows, start=1)]
        return str(hook.submit_listings_feed(messages))

    def feed_result(self, hook, feed_id: str) -> dict:
        return hook.feed_result(feed_id)
