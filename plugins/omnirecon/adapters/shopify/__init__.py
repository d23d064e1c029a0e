"""Shopify (Admin GraphQL): variants and inventory levels by bulk operation; writes are one
inventorySetQuantities call per 250 quantities, compare-and-swap (changeFromQuantity) with an @idempotent key."""
from __future__ import annotations

import logging
from datetime import datetime

from omnirecon.adapters.base import SystemAdapter, ref_value
from omnirecon.adapters.shopify import notifications as nt
from omnirecon.model import normalize as nz
from omnirecon.model.notification import ts

log = logging.getLogger(__name__)
QUANTITIES_PER_CALL = 250          # inventorySetQuantities
STALE_CODES = ("CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE")


def _pair(c) -> tuple[str, str]:
    """(inventory item id, location id) of a correction."""
    return (str(ref_value(c, "inventory_item_id", "inventoryItemId")),
            str(ref_value(c, "location_id", "locationId", default=c.location)))


def _quantity_index(field) -> int | None:
    """["input", "quantities", "3", "changeFromQuantity"] -> 3."""
    if not isinstance(field, (list, tuple)):
        return None
    for a, b in zip(field, field[1:]):
        if a == "quantities" and str(b).isdigit():
            return int(b)
    return None


def _messages(errors: list[dict]) -> str:
    return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)


class ShopifyAdapter(SystemAdapter):
    platform = "shopify"
    conn_type = "omnirecon_shopify"
    hook_path = "omnirecon.hooks.shopify.ShopifyHook"
    location_key = "shopify"
    normalizers = {"inventory": nz.shopify_inventory, "listings": nz.shopify_listings, "orders": nz.shopify_orders}
    write_paths = {"set_quantities": "batch"}
    batch_call_size = QUANTITIES_PER_CALL
    channel_role = "storefront"

    def notification_source(self, conn):
        """Extra `client_secret` (the app's), and during a rotation `previous_client_secret` and
        `client_secret_rotated_at` (ISO-8601): the old secret is accepted for an hour."""
        x = (conn.extra_dejson or {}) if conn is not None else {}
        if not x.get("client_secret"):
            return None
        return nt.ShopifySource(x["client_secret"], x.get("previous_client_secret"),
                                ts(x.get("client_secret_rotated_at")), name=self.system)

    def ensure_subscriptions(self, make_hook, conn, receiver_base_url: str, sqs_queue_arn: str | None = None):
        return nt.ShopifySubscriptions(make_hook()).ensure(f"{receiver_base_url}/notifications/{self.system}")

    def notification_changes(self, topic, doc, when, *, erp_sku, item_skus=None) -> list:
        return nt.changes(self.system, topic, doc, when, erp_sku, item_skus)

    def fetch_catalog(self, hook) -> dict:
        return hook.fetch_variants()

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        return {"orders": hook.fetch_orders(start, end)}, end

    def batch_method(self, n: int, per_sku_max: int, per_sku_batch: int) -> tuple[str, int]:
        return "set_quantities", QUANTITIES_PER_CALL

    def read_many(self, hook, rows: list) -> dict[int, int | None]:
        got = self._read(hook, rows)
        return {c.id: got.get(_pair(c)) for c in rows}

    def read_one(self, hook, c) -> int | None:
        return self._read(hook, [c]).get(_pair(c))

    @staticmethod
    def _read(hook, rows: list) -> dict:
        try:
            got = hook.read_available([_pair(c) for c in rows])
        except Exception as e:
            log.warning("shopify read-back failed: %s", e)
            return {}
        return {(str(k[0]), str(k[1])): v for k, v in (got or {}).items()}

    def write_batch(self, hook, rows: list, idempotency_key: str) -> dict[int, tuple[str, str]]:
        """One inventorySetQuantities call. Rows blocked only by other rows' errors are left out (retried)."""
        changes = [{"inventory_item_id": item, "location_id": loc, "quantity": c.to_qty, "change_from": c.from_qty}
                   for c in rows for item, loc in [_pair(c)]]
        res = hook.set_available(changes, idempotency_key=idempotency_key, reason="correction",
                                 reference_document_uri=f"gid://omnirecon/Correction/{rows[0].id}")
        if res.get("ok"):
            return {c.id: ("applied", "inventorySetQuantities accepted") for c in rows}
        by_row: dict[int, list[dict]] = {}
        general: list[dict] = []
        for err in res.get("user_errors") or []:
            idx = _quantity_index(err.get("field"))
            (by_row.setdefault(idx, []) if idx is not None and idx < len(rows) else general).append(err)
        current = self._read(hook, rows)
        out: dict[int, tuple[str, str]] = {}
        retry = []
        for n, c in enumerate(rows):
            errs = by_row.get(n, [])
            now = current.get(_pair(c))
            if now == c.to_qty:
                out[c.id] = ("applied", "already at target on the channel")
            elif now is not None and now != c.from_qty:
                out[c.id] = ("skipped_changed", f"channel changed since the snapshot: {c.from_qty} -> {now}")
            elif any(e.get("code") in STALE_CODES for e in errs + general) and now is None:
                out[c.id] = ("skipped_changed", "changeFromQuantity stale: the channel changed since the snapshot")
            elif errs or (general and len(rows) == 1):
                out[c.id] = ("failed", f"rejected by Shopify: {_messages(errs or general)}")
            else:
                retry.append(c)
        if retry and not by_row and general:   # errors we cannot pin to a row: do not loop
            out.update({c.id: ("failed", f"rejected by Shopify: {_messages(general)}") for c in retry})
        return out
