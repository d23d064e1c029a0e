"""omnirecon's canonical model: what every system's data is normalised into.

One vocabulary for the four systems: SKU (the ERP itemid after alias resolution happens in checks;
here the SKU *as the system shows it*), location (ERP location name, Shopify location GID, Walmart ship
node, Amazon MFN/FBA), quantities by name, listing state, and one order lifecycle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from omnirecon.model.values import LIVE_CHECKS, Action, Check, CorrectionStatus, Diagnosis, OrderStatus, Severity

SYSTEMS = ("erp", "shopify", "amazon", "walmart")
CHANNELS = ("shopify", "amazon", "walmart")
SNAPSHOT_KINDS = ("inventory", "listings", "orders")

# The canonical order lifecycle (outputs.md). `rank` orders the forward path; cancelled is terminal.
ORDER_STATUSES = tuple(OrderStatus)
ORDER_RANK = {s: s.rank for s in OrderStatus}
# Systems disagree legitimately on placed/acknowledged and shipped/delivered; compare phases.
ORDER_PHASE = {"placed": "open", "acknowledged": "open", "partially_shipped": "partial",
               "shipped": "shipped", "delivered": "shipped", "cancelled": "cancelled"}

# Listing states (canonical): can a buyer purchase it on that channel?
LISTING_STATES = ("active", "suppressed", "unpublished", "inactive", "untracked")

# The closed vocabularies of outputs.md (model/values.py), as tuples in their documented order.
CHECKS = tuple(c for c in Check if c not in LIVE_CHECKS)   # what a reconcile run checks
SEVERITIES = tuple(Severity)
DIAGNOSES = tuple(Diagnosis)
ACTIONS = tuple(Action)
CORRECTION_STATUSES = tuple(CorrectionStatus)


class UnknownStatus(ValueError):
    """A status value outside the documented enum: the row is quarantined."""


# --- order status maps (reference/channel-apis.md §1.12, §2.10, §3.8, §4.7) -----------------
_S = OrderStatus
NETSUITE_SO_STATUS = {"A": _S.PLACED, "B": _S.ACKNOWLEDGED, "D": _S.PARTIALLY_SHIPPED, "E": _S.PARTIALLY_SHIPPED,
                      "F": _S.SHIPPED, "G": _S.SHIPPED, "C": _S.CANCELLED, "H": _S.SHIPPED}
AMAZON_ORDER_STATUS = {"PendingAvailability": _S.PLACED, "Pending": _S.PLACED, "Unshipped": _S.ACKNOWLEDGED,
                       "PartiallyShipped": _S.PARTIALLY_SHIPPED, "Shipped": _S.SHIPPED,
                       "InvoiceUnconfirmed": _S.SHIPPED, "Canceled": _S.CANCELLED, "Unfulfillable": _S.PLACED}
SHOPIFY_FULFILLMENT_STATUS = {"UNFULFILLED": _S.PLACED, "OPEN": _S.PLACED, "SCHEDULED": _S.PLACED, "ON_HOLD": _S.PLACED,
                              "PENDING_FULFILLMENT": _S.PLACED, "IN_PROGRESS": _S.PLACED, "REQUEST_DECLINED": _S.PLACED,
                              "RESTOCKED": _S.PLACED, "PARTIALLY_FULFILLED": _S.PARTIALLY_SHIPPED,
                              "FULFILLED": _S.SHIPPED, "FULFILLMENT_NOT_REQUIRED": _S.SHIPPED}
WALMART_LINE_STATUSES = ("Created", "Acknowledged", "Shipped", "Delivered", "Cancelled", "Refund")


def netsuite_status(letter: str, fulfilled: bool = False) -> OrderStatus:
    letter = (letter or "").split(":")[-1]
    if letter not in NETSUITE_SO_STATUS:
        raise UnknownStatus(f"unknown NetSuite sales order status {letter!r} (expected A..H)")
    if letter == "H" and not fulfilled:
        return OrderStatus.CANCELLED
    return NETSUITE_SO_STATUS[letter]


def amazon_status(value: str) -> OrderStatus:
    if value not in AMAZON_ORDER_STATUS:
        raise UnknownStatus(f"unknown Amazon OrderStatus {value!r}")
    return AMAZON_ORDER_STATUS[value]


def shopify_status(display_fulfillment_status: str, cancelled_at) -> OrderStatus:
    if cancelled_at:
        return OrderStatus.CANCELLED
    if display_fulfillment_status not in SHOPIFY_FULFILLMENT_STATUS:
        raise UnknownStatus(f"unknown Shopify displayFulfillmentStatus {display_fulfillment_status!r}")
    return SHOPIFY_FULFILLMENT_STATUS[display_fulfillment_status]


def walmart_status(line_statuses: list[str]) -> OrderStatus:
    """Roll Walmart line statuses up to one canonical order status."""
    for s in line_statuses:
        if s not in WALMART_LINE_STATUSES:
            raise UnknownStatus(f"unknown Walmart order line status {s!r}")
    live = [s for s in line_statuses if s not in ("Cancelled", "Refund")]
    if not live:
        return OrderStatus.CANCELLED
    if all(s == "Delivered" for s in live):
        return OrderStatus.DELIVERED
    if all(s in ("Shipped", "Delivered") for s in live):
        return OrderStatus.SHIPPED
    if any(s in ("Shipped", "Delivered") for s in live):
        return OrderStatus.PARTIALLY_SHIPPED
    if any(s == "Acknowledged" for s in live):
        return OrderStatus.ACKNOWLEDGED
    return OrderStatus.PLACED


# --- records -------------------------------------------------------------------------------
@dataclass
class InventoryRecord:
    system: str
    sku: str                      # the SKU as the system shows it (channel SKU)
    location: str                 # ERP location name | Shopify location GID | Walmart ship node | MFN | FBA
    available: int | None = None  # sellable quantity the channel exposes (ERP: on_hand - committed)
    on_hand: int | None = None
    committed: int | None = None
    on_order: int | None = None
    reserved: int | None = None
    updated_at: datetime | None = None
    ref: dict = field(default_factory=dict)   # ids needed to write back (inventoryItemId, asin, productType...)

    def key(self) -> tuple:
        return (self.system, self.sku, self.location)


@dataclass
class ListingRecord:
    system: str
    sku: str
    state: str                     # one of LISTING_STATES
    raw_status: str = ""
    issues: list = field(default_factory=list)
    inventory_policy: str | None = None   # Shopify DENY | CONTINUE
    tracked: bool | None = None
    item_type: str | None = None          # ERP InvtPart | NonInvtPart | Kit | Assembly
    is_inactive: bool | None = None
    updated_at: datetime | None = None
    ref: dict = field(default_factory=dict)

    def key(self) -> tuple:
        return (self.system, self.sku)


@dataclass
class OrderRecord:
    system: str
    order_id: str                   # the channel's own order id (the join key across systems)
    channel: str                    # the selling channel (for ERP rows: where the order came from)
    status: str                     # canonical
    raw_status: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    erp_ref: str | None = None      # NetSuite tranid / internal id
    fulfilled_at: datetime | None = None
    fulfillment_channel: str | None = None   # Amazon MFN | AFN
    lines: list = field(default_factory=list)  # [{"sku", "quantity", "shipped"}]

    def key(self) -> tuple:
        return (self.system, self.order_id)


@dataclass
class Quarantined:
    row_index: int
    key: str
    reason: str
    payload: dict | str | None = None


def to_dict(record) -> dict:
    return asdict(record)
