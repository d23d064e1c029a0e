"""One change in one system as the trigger chain sees it (from a notification or a targeted read)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Change:
    """One change in one system, normalised: (system, SKU or order, value, changed_at)."""
    system: str
    kind: str                     # inventory | order | status
    key: str                      # ERP SKU (inventory) or the channel's order id
    at: datetime
    value: object = None
    location: str | None = None
    channel: str | None = None    # an order or fulfilment recorded in the ERP: the channel it belongs to
    skus: tuple = ()              # an order's ERP SKUs
    via: str = "notification"     # notification | read
    units: tuple = ()             # an order's units per SKU (as skus)
    before: object = None         # a read: the value the previous read saw, at `since`
    since: datetime | None = None
