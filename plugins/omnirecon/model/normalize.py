"""THE one place where raw API payloads become canonical records.

Every function takes what a hook fetched and returns `(records, quarantined)`. A row that cannot be
trusted (missing field, negative or non-integer quantity, unknown enum, unparseable timestamp, second
occurrence of a key) becomes a `Quarantined` with the reason; nothing is dropped silently, so
rows in = len(records) + len(quarantined), where "rows" are the units listed in each docstring.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterable

from omnirecon.model.canonical import (InventoryRecord, ListingRecord, OrderRecord, Quarantined, UnknownStatus,
                                       amazon_status, netsuite_status, shopify_status, walmart_status)
from omnirecon.timeutil import parse_ts

NETSUITE_ITEM_TYPES = ("InvtPart", "NonInvtPart", "Kit", "Assembly", "Service", "OthCharge", "GiftCert",
                       "Group", "Discount", "Markup", "Payment", "Subtotal", "Description", "DwnLdItem")
SHOPIFY_POLICIES = ("DENY", "CONTINUE")
AMAZON_REPORT_STATUSES = ("active", "inactive", "incomplete")
AMAZON_SUMMARY_STATUSES = ("BUYABLE", "DISCOVERABLE")
WALMART_PUBLISHED = {"PUBLISHED": "active", "UNPUBLISHED": "unpublished", "SYSTEM_PROBLEM": "unpublished",
                     "IN_PROGRESS": "unpublished", "READY_TO_PUBLISH": "unpublished", "STAGE": "unpublished"}
WALMART_LIFECYCLE = ("ACTIVE", "ARCHIVED", "RETIRED")
ERP_CHANNELS = ("shopify", "amazon", "walmart")
_NS_DATE_FORMATS = ("%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S")


class RowError(ValueError):
    """This row is quarantined with this reason."""


# --- field parsers ---------------------------------------------------------------------------
def quantity(value: Any, name: str, *, required: bool = True, allow_negative: bool = False) -> int | None:
    """An integer quantity from an int or a numeric string ("10", "10.0"); None if absent and optional."""
    if value is None or value == "":
        if required:
            raise RowError(f"missing {name}")
        return None
    if isinstance(value, bool):
        raise RowError(f"{name} is not an integer: {value!r}")
    if isinstance(value, int):
        n = value
    else:
        try:
            f = float(str(value).strip())
        except ValueError:
            raise RowError(f"{name} is not an integer: {value!r}") from None
        if f != f or f in (float("inf"), float("-inf")) or not f.is_integer():
            raise RowError(f"{name} is not an integer: {value!r}")
        n = int(f)
    if n < 0 and not allow_negative:
        raise RowError(f"{name} is negative: {n}")
    return n


def timestamp(value: Any, name: str, *, required: bool = False) -> datetime | None:
    if value is None or value == "":
        if required:
            raise RowError(f"missing {name}")
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())        # epoch milliseconds sent as a string
    try:
        return parse_ts(value)
    except (ValueError, TypeError, OverflowError, OSError):
        pass
    parsed = _account_date(value.strip()) if isinstance(value, str) else None
    if parsed is None:
        raise RowError(f"{name} is not a timestamp: {value!r}")
    return parsed


@lru_cache(maxsize=65536)
def _account_date(value: str) -> datetime | None:
    """NetSuite answers in the account's date format; a snapshot repeats the same few thousand values."""
    for fmt in _NS_DATE_FORMATS:
        try:
            return parse_ts(datetime.strptime(value, fmt))
        except ValueError:
            continue
    return None


def text(row: dict, name: str, label: str | None = None) -> str:
    value = row.get(name) if isinstance(row, dict) else None
    if value is None or str(value).strip() == "":
        raise RowError(f"missing {label or name}")
    return str(value).strip()


def flag(value: Any, name: str) -> bool:
    """NetSuite booleans: 'T'/'F', true/false."""
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    s = str(value).strip().lower()
    if s in ("t", "true", "yes", "y", "1"):
        return True
    if s in ("f", "false", "no", "n", "0"):
        return False
    raise RowError(f"{name} is not a boolean: {value!r}")


def _get(obj: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def _newest(values: Iterable[datetime | None]) -> datetime | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


# --- the shared loop -------------------------------------------------------------------------
def run(rows: list, build: Callable[[Any], Any], describe: Callable[[Any], str] | None = None):
    """build(row) -> record or RowError. Keeps the first of a key, quarantines later ones."""
    records, quarantined, seen = [], [], {}
    for i, row in enumerate(rows):
        label = ""
        try:
            label = describe(row) if describe else ""
        except Exception:
            label = ""
        try:
            if not isinstance(row, dict):
                raise RowError(f"row is not an object: {type(row).__name__}")
            record = build(row)
        except UnknownStatus as e:
            quarantined.append(Quarantined(i, label, str(e), _payload(row)))
            continue
        except RowError as e:
            quarantined.append(Quarantined(i, label, str(e), _payload(row)))
            continue
        key = record.key()
        key_text = "|".join(str(k) for k in key[1:])
        if key in seen:
            quarantined.append(Quarantined(i, key_text, f"duplicate of row {seen[key]}", _payload(row)))
            continue
        seen[key] = i
        records.append(record)
    return records, quarantined


def _payload(row: Any) -> dict:
    if isinstance(row, dict):
        return _jsonable(row)
    return {"raw": repr(row)[:2000]}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


# --- ERP (NetSuite SuiteQL rows) -------------------------------------------------------------
def erp_inventory(raw: dict):
    """Rows: `raw["levels"]` (inventoryitemlocations), joined to `items` and `locations` by id.

    NetSuite leaves null columns out of a row: a missing quantity column is 0; a missing item or
    location, or one that is not in the item/location lists, quarantines the row.
    """
    items = {str(r.get("id")): r for r in raw.get("items") or [] if isinstance(r, dict)}
    locations = {str(r.get("id")): r for r in raw.get("locations") or [] if isinstance(r, dict)}

    def build(row):
        item_id, loc_id = text(row, "item"), text(row, "location")
        item = items.get(item_id)
        if item is None:
            raise RowError(f"unknown item id {item_id}")
        location = locations.get(loc_id)
        if location is None:
            raise RowError(f"unknown location id {loc_id}")
        on_hand = quantity(row.get("quantityonhand") or 0, "quantityonhand")
        committed = quantity(row.get("quantitycommitted") or 0, "quantitycommitted")
        on_order = quantity(row.get("quantityonorder") or 0, "quantityonorder")
        updated = timestamp(row.get("lastmodifieddate"), "lastmodifieddate") \
            or timestamp(item.get("lastmodifieddate"), "item lastmodifieddate")
        return InventoryRecord(system="erp", sku=text(item, "itemid"), location=text(location, "name", "location name"),
                               available=on_hand - committed, on_hand=on_hand, committed=committed,
                               on_order=on_order, updated_at=updated,
                               ref={"item_id": item_id, "location_id": loc_id})

    def describe(row):
        return f"item {row.get('item')} @ location {row.get('location')}"
    return run(list(raw.get("levels") or []), build, describe)


def erp_listings(raw: dict):
    """Rows: `raw["items"]` (the item master)."""
    def build(row):
        item_type = text(row, "itemtype")
        if item_type not in NETSUITE_ITEM_TYPES:
            raise RowError(f"unknown NetSuite item type {item_type!r}")
        inactive = flag(row.get("isinactive"), "isinactive")
        return ListingRecord(system="erp", sku=text(row, "itemid"), state="inactive" if inactive else "active",
                             raw_status="inactive" if inactive else "active", item_type=item_type,
                             is_inactive=inactive, updated_at=timestamp(row.get("lastmodifieddate"), "lastmodifieddate"),
                             ref={"item_id": str(row.get("id"))})
    return run(list(raw.get("items") or []), build, lambda r: str(r.get("itemid") or r.get("id") or ""))


def erp_orders(raw: dict):
    """Rows: `raw["orders"]` (SalesOrd transactions), with `lines`, `shipments` (ItemShip by createdfrom)
    and `items` (id -> itemid) joined in."""
    itemids = {str(r.get("id")): r.get("itemid") for r in raw.get("items") or [] if isinstance(r, dict)}
    lines_by_tx: dict[str, list] = {}
    for line in raw.get("lines") or []:
        if isinstance(line, dict):
            lines_by_tx.setdefault(str(line.get("transaction")), []).append(line)
    ships_by_so: dict[str, list] = {}
    for ship in raw.get("shipments") or []:
        if isinstance(ship, dict):
            ships_by_so.setdefault(str(ship.get("createdfrom")), []).append(ship)

    def build(row):
        tx_id = text(row, "id")
        order_id = text(row, "otherrefnum", "otherrefnum (channel order id)")
        channel = text(row, "custbody_omni_channel").lower()
        if channel not in ERP_CHANNELS:
            raise RowError(f"unknown custbody_omni_channel {channel!r} (expected shopify, amazon or walmart)")
        lines = []
        for line in lines_by_tx.get(tx_id, []):
            if line.get("item") in (None, ""):
                continue    # the header ("mainline") and non-item lines carry no item
            sku = itemids.get(str(line["item"]))
            if not sku:
                raise RowError(f"line names unknown item id {line['item']}")
            # Sales order lines hold negative quantities in NetSuite (stock leaving): compare magnitudes.
            qty = abs(quantity(line.get("quantity"), "line quantity", allow_negative=True))
            shipped = abs(quantity(line.get("quantityshiprecv") or 0, "line quantityshiprecv", allow_negative=True))
            lines.append({"sku": sku, "quantity": qty, "shipped": shipped})
        ship_times = [timestamp(s.get("createddate") or s.get("trandate"), "item fulfilment date")
                      for s in ships_by_so.get(tx_id, [])]
        fulfilled = bool(ship_times) or any(l["shipped"] > 0 for l in lines)
        letter = text(row, "status")
        return OrderRecord(system="erp", order_id=order_id, channel=channel,
                           status=netsuite_status(letter, fulfilled=fulfilled), raw_status=letter,
                           created_at=timestamp(row.get("createddate"), "createddate", required=True),
                           updated_at=timestamp(row.get("lastmodifieddate"), "lastmodifieddate", required=True),
                           erp_ref=str(row.get("tranid") or tx_id), fulfilled_at=_newest(ship_times), lines=lines)
    return run(list(raw.get("orders") or []), build, lambda r: str(r.get("otherrefnum") or r.get("tranid") or ""))


# --- Shopify (GraphQL nodes) -----------------------------------------------------------------
def _levels(variant: dict) -> list:
    item = variant.get("inventoryItem") or {}
    levels = item.get("inventoryLevels") or {}
    if isinstance(levels, dict):
        levels = levels.get("nodes") or [e.get("node") for e in levels.get("edges") or [] if isinstance(e, dict)]
    return levels or []


def _shopify_quantities(level: dict) -> tuple[dict, datetime | None]:
    out, stamps = {}, []
    for q in level.get("quantities") or []:
        if not isinstance(q, dict) or not q.get("name"):
            raise RowError("a quantity entry has no name")
        out[q["name"]] = q.get("quantity")
        stamps.append(timestamp(q.get("updatedAt"), f"{q['name']} updatedAt"))
    return out, _newest(stamps)


def shopify_inventory(raw: dict):
    """Rows: one per (variant, inventory level). `available` may be negative (oversold under CONTINUE)."""
    rows = []
    for variant in raw.get("variants") or []:
        if not isinstance(variant, dict):
            rows.append(variant)
            continue
        for level in _levels(variant):
            rows.append({"variant": variant, "level": level})

    def build(row):
        variant, level = row["variant"], row["level"]
        if not isinstance(level, dict):
            raise RowError("inventory level is not an object")
        sku = text(variant, "sku")
        location = _get(level, "location", "id")
        if not location:
            raise RowError("missing location id")
        q, updated = _shopify_quantities(level)
        item = variant.get("inventoryItem") or {}
        if not item.get("id"):
            raise RowError("missing inventoryItem.id")
        return InventoryRecord(system="shopify", sku=sku, location=str(location),
                               available=quantity(q.get("available"), "available", allow_negative=True),
                               on_hand=quantity(q.get("on_hand"), "on_hand", required=False),
                               committed=quantity(q.get("committed"), "committed", required=False),
                               updated_at=updated,
                               ref={"inventory_item_id": item["id"], "variant_id": variant.get("id"),
                                    "tracked": item.get("tracked")})

    def describe(row):
        if not isinstance(row, dict) or "variant" not in row:
            return ""
        return f"{row['variant'].get('sku') or row['variant'].get('id')} @ {_get(row['level'], 'location', 'id')}"
    return run(rows, build, describe)


def shopify_listings(raw: dict):
    """Rows: one per variant."""
    def build(row):
        sku = text(row, "sku")
        item = row.get("inventoryItem") or {}
        if not item.get("id"):
            raise RowError("missing inventoryItem.id")
        policy = text(row, "inventoryPolicy")
        if policy not in SHOPIFY_POLICIES:
            raise RowError(f"unknown inventoryPolicy {policy!r} (expected DENY or CONTINUE)")
        tracked = item.get("tracked")
        if not isinstance(tracked, bool):
            raise RowError(f"inventoryItem.tracked is not a boolean: {tracked!r}")
        return ListingRecord(system="shopify", sku=sku, state="active" if tracked else "untracked",
                             raw_status=f"tracked={str(tracked).lower()} policy={policy}",
                             inventory_policy=policy, tracked=tracked,
                             ref={"variant_id": row.get("id"), "inventory_item_id": item["id"]})
    return run(list(raw.get("variants") or []), build, lambda r: str(r.get("sku") or r.get("id") or ""))


def shopify_orders(raw: dict):
    """Rows: one per order node."""
    def build(row):
        status = shopify_status(row.get("displayFulfillmentStatus"), row.get("cancelledAt"))
        lines = []
        items = row.get("lineItems") or {}
        for li in (items.get("nodes") if isinstance(items, dict) else items) or []:
            lines.append({"sku": (li or {}).get("sku") or "", "quantity": quantity((li or {}).get("quantity"), "line quantity"),
                          "shipped": None})
        timestamp(row.get("cancelledAt"), "cancelledAt")
        return OrderRecord(system="shopify", order_id=text(row, "id"), channel="shopify", status=status,
                           raw_status=str(row.get("displayFulfillmentStatus") or ""),
                           created_at=timestamp(row.get("createdAt"), "createdAt", required=True),
                           updated_at=timestamp(row.get("updatedAt"), "updatedAt", required=True), lines=lines)
    return run(list(raw.get("orders") or []), build, lambda r: str(r.get("id") or r.get("name") or ""))


# --- Amazon (report rows, FBA summaries, listings items, orders) -----------------------------
def _is_mfn(row: dict) -> bool:
    channel = (row.get("fulfillment-channel") or "DEFAULT").strip().upper()
    return channel in ("DEFAULT", "MFN", "MERCHANT")


def _product_type(detail: dict | None) -> str | None:
    for s in (detail or {}).get("summaries") or []:
        if isinstance(s, dict) and s.get("productType"):
            return s["productType"]
    return None


def amazon_inventory(raw: dict):
    """Rows: merchant-fulfilled report rows (location MFN, listing quantity), then FBA summaries
    (location FBA, fulfillable quantity). Report rows of Amazon-fulfilled listings are not inventory rows:
    their stock is the FBA summary."""
    details = raw.get("details") or {}
    rows = [{"source": "report", "row": r} for r in raw.get("report") or [] if not isinstance(r, dict) or _is_mfn(r)]
    rows += [{"source": "fba", "row": s} for s in raw.get("fba") or []]

    def build(wrapped):
        row = wrapped["row"]
        if not isinstance(row, dict):
            raise RowError("row is not an object")
        if wrapped["source"] == "report":
            sku = text(row, "seller-sku")
            return InventoryRecord(system="amazon", sku=sku, location="MFN",
                                   available=quantity(row.get("quantity"), "quantity"),
                                   ref={"asin": row.get("asin1") or None,
                                        "product_type": _product_type(details.get(sku)),
                                        "fulfillment_channel_code": "DEFAULT"})
        inv = row.get("inventoryDetails")
        if not isinstance(inv, dict):
            raise RowError("missing inventoryDetails (request details=true)")
        return InventoryRecord(system="amazon", sku=text(row, "sellerSku"), location="FBA",
                               available=quantity(inv.get("fulfillableQuantity"), "fulfillableQuantity"),
                               on_hand=quantity(row.get("totalQuantity"), "totalQuantity", required=False),
                               reserved=quantity(_get(inv, "reservedQuantity", "totalReservedQuantity"),
                                                 "totalReservedQuantity", required=False),
                               on_order=_inbound(inv),
                               updated_at=timestamp(row.get("lastUpdatedTime"), "lastUpdatedTime"),
                               ref={"asin": row.get("asin"), "fn_sku": row.get("fnSku")})

    def describe(wrapped):
        r = wrapped.get("row") if isinstance(wrapped, dict) else None
        if not isinstance(r, dict):
            return ""
        return f"{r.get('seller-sku') or r.get('sellerSku') or ''} ({wrapped['source']})"
    return run(rows, build, describe)


def _inbound(inv: dict) -> int | None:
    parts = [inv.get(k) for k in ("inboundWorkingQuantity", "inboundShippedQuantity", "inboundReceivingQuantity")]
    if all(p is None for p in parts):
        return None
    return sum(quantity(p, "inbound quantity", required=False) or 0 for p in parts)


def amazon_listing_state(report_status: str, detail: dict | None) -> tuple[str, list]:
    """Canonical state from the report's status and, for inactive listings, getListingsItem
    summaries + issues: an ERROR-severity issue means suppressed."""
    issues = [i for i in (detail or {}).get("issues") or [] if isinstance(i, dict)]
    if report_status == "active":
        return "active", issues
    if any(str(i.get("severity", "")).upper() == "ERROR" for i in issues):
        return "suppressed", issues
    statuses = set()
    for s in (detail or {}).get("summaries") or []:
        for st in (s or {}).get("status") or []:
            if st not in AMAZON_SUMMARY_STATUSES:
                raise UnknownStatus(f"unknown Amazon listing status {st!r}")
            statuses.add(st)
    if "BUYABLE" in statuses:
        return "active", issues
    return "inactive", issues


def amazon_listings(raw: dict):
    """Rows: every listings report row (details fetched for the inactive ones)."""
    details = raw.get("details") or {}

    def build(row):
        sku = text(row, "seller-sku")
        status = text(row, "status").lower()
        if status not in AMAZON_REPORT_STATUSES:
            raise RowError(f"unknown listing report status {row.get('status')!r}")
        detail = details.get(sku)
        state, issues = amazon_listing_state(status, detail)
        summary_status = sorted({st for s in (detail or {}).get("summaries") or [] for st in (s or {}).get("status") or []})
        raw_status = row.get("status") + (f" [{', '.join(summary_status)}]" if summary_status else "")
        return ListingRecord(system="amazon", sku=sku, state=state, raw_status=raw_status, issues=issues,
                             ref={"asin": row.get("asin1") or None, "product_type": _product_type(detail),
                                  "fulfillment_channel": (row.get("fulfillment-channel") or "DEFAULT")})
    return run(list(raw.get("report") or []), build, lambda r: str(r.get("seller-sku") or ""))


def amazon_orders(raw: dict):
    """Rows: one per order (Orders v0), items attached under `OrderItems`."""
    def build(row):
        status = amazon_status(text(row, "OrderStatus"))
        lines = []
        for item in row.get("OrderItems") or []:
            lines.append({"sku": (item or {}).get("SellerSKU") or "",
                          "quantity": quantity((item or {}).get("QuantityOrdered"), "QuantityOrdered"),
                          "shipped": quantity((item or {}).get("QuantityShipped"), "QuantityShipped", required=False)})
        fc = row.get("FulfillmentChannel")
        if fc not in (None, "MFN", "AFN"):
            raise RowError(f"unknown FulfillmentChannel {fc!r}")
        return OrderRecord(system="amazon", order_id=text(row, "AmazonOrderId"), channel="amazon", status=status,
                           raw_status=row["OrderStatus"],
                           created_at=timestamp(row.get("PurchaseDate"), "PurchaseDate", required=True),
                           updated_at=timestamp(row.get("LastUpdateDate"), "LastUpdateDate", required=True),
                           fulfillment_channel=fc, lines=lines)
    return run(list(raw.get("orders") or []), build, lambda r: str(r.get("AmazonOrderId") or ""))


# --- Walmart ---------------------------------------------------------------------------------
def walmart_inventory(raw: dict):
    """Rows: one per (SKU, ship node) of /v3/inventories. available = inputQty (what the seller set)."""
    rows = []
    for inv in raw.get("inventories") or []:
        nodes = inv.get("nodes") if isinstance(inv, dict) else None
        if not isinstance(nodes, list) or not nodes:
            rows.append({"inventory": inv, "node": None})
            continue
        rows += [{"inventory": inv, "node": n} for n in nodes]

    def build(row):
        inv, node = row["inventory"], row["node"]
        if not isinstance(inv, dict):
            raise RowError("inventory entry is not an object")
        sku = text(inv, "sku")
        if not isinstance(node, dict):
            raise RowError("inventory entry has no ship nodes")
        return InventoryRecord(system="walmart", sku=sku, location=text(node, "shipNode"),
                               available=quantity(_get(node, "inputQty", "amount"), "inputQty.amount"),
                               reserved=quantity(_get(node, "reservedQty", "amount"), "reservedQty.amount",
                                                 required=False),
                               ref={})

    def describe(row):
        inv = row.get("inventory") if isinstance(row, dict) else None
        return f"{(inv or {}).get('sku', '') if isinstance(inv, dict) else ''} @ {_get(row.get('node'), 'shipNode') or ''}"
    return run(rows, build, describe)


def walmart_listings(raw: dict):
    """Rows: one per /v3/items entry."""
    def build(row):
        sku = text(row, "sku")
        published = text(row, "publishedStatus")
        if published not in WALMART_PUBLISHED:
            raise RowError(f"unknown publishedStatus {published!r}")
        lifecycle = str(row.get("lifecycleStatus") or "ACTIVE")
        if lifecycle not in WALMART_LIFECYCLE:
            raise RowError(f"unknown lifecycleStatus {lifecycle!r}")
        state = "inactive" if lifecycle in ("RETIRED", "ARCHIVED") else WALMART_PUBLISHED[published]
        issues = [{"code": "UNPUBLISHED", "message": r} for r in _get(row, "unpublishedReasons", "reason") or []]
        return ListingRecord(system="walmart", sku=sku, state=state, raw_status=f"{published}/{lifecycle}",
                             issues=issues, ref={"wpid": row.get("wpid")} if row.get("wpid") else {})
    return run(list(raw.get("items") or []), build, lambda r: str(r.get("sku") or ""))


def walmart_orders(raw: dict):
    """Rows: one per purchase order; the status rolls the line statuses up."""
    def build(row):
        order_lines = _get(row, "orderLines", "orderLine")
        if not isinstance(order_lines, list) or not order_lines:
            raise RowError("missing orderLines.orderLine")
        statuses, lines, stamps = [], [], []
        for line in order_lines:
            entries = _get(line, "orderLineStatuses", "orderLineStatus") or []
            if not entries:
                raise RowError(f"line {(line or {}).get('lineNumber')} has no status")
            shipped = 0
            for e in entries:
                st = text(e, "status", "line status")
                statuses.append(st)
                if st in ("Shipped", "Delivered"):
                    shipped += quantity(_get(e, "statusQuantity", "amount"), "statusQuantity.amount")
            stamps.append(timestamp(line.get("statusDate"), "statusDate"))
            lines.append({"sku": _get(line, "item", "sku") or "",
                          "quantity": quantity(_get(line, "orderLineQuantity", "amount"), "orderLineQuantity.amount"),
                          "shipped": shipped})
        created = timestamp(row.get("orderDate"), "orderDate", required=True)
        return OrderRecord(system="walmart", order_id=text(row, "purchaseOrderId"), channel="walmart",
                           status=walmart_status(statuses), raw_status=",".join(statuses), created_at=created,
                           updated_at=_newest(stamps + [timestamp(row.get("lastModified"), "lastModified")]) or created,
                           lines=lines)
    return run(list(raw.get("orders") or []), build, lambda r: str(r.get("purchaseOrderId") or ""))


def high_water(records: list) -> datetime | None:
    """The newest last-update time among records (the source's high-water mark)."""
    return _newest(getattr(r, "updated_at", None) for r in records)
