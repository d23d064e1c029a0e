"""Every state change of an imitated system, published on one bus (the world's hops and the platforms'
notifications subscribe to it). A change made through the public API and one made by the retailer's
integration or by the world's own events go through the same system code and publish the same Change;
only `by` tells them apart."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("sandbox_actor", default="api")

# kinds
INVENTORY = "inventory"            # a quantity changed (sku, location, value = what the system shows now)
ORDER_CREATED = "order_created"
ORDER_CANCELLED = "order_cancelled"
ORDER_FULFILLED = "order_fulfilled"  # channel: shipped/fulfilled; ERP: an item fulfilment
STATUS = "status"                  # a listing's publish status changed (detail: published, reasons)


@dataclass(frozen=True)
class Change:
    system: str                 # erp | shopify | amazon | walmart
    kind: str                   # INVENTORY | ORDER_*
    at: float                   # sandbox clock, seconds since the world started (monotonic)
    at_iso: str                 # the same instant as the platform's timestamps show it
    by: str                     # api | integration | world (a scenario event or demand)
    sku: str | None = None      # the system's own SKU
    location: str | None = None  # ERP location name, Shopify location gid, Walmart ship node, Amazon "MFN"
    order: str | None = None    # the channel's order id (for the ERP: the sales order's channel_order_id)
    value: int | None = None    # quantity after the change (ERP: on_hand - committed at the location)
    detail: dict = field(default_factory=dict)


class ChangeBus:
    """Synchronous fan-out. Subscribers run in the publishing thread, after the state changed and outside
    the sandbox lock: they must be quick and hand slow work (HTTP delivery) to their own queue."""

    def __init__(self):
        self._subs: list = []
        self._lock = threading.Lock()

    def subscribe(self, fn):
        """fn(change) for every change from now on. -> a callable that unsubscribes."""
        with self._lock:
            self._subs = self._subs + [fn]

        def unsubscribe():
            with self._lock:
                self._subs = [s for s in self._subs if s is not fn]
        return unsubscribe

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def publish(self, change: Change) -> None:
        for fn in self._subs:
            try:
                fn(change)
            except Exception:  # one broken subscriber must not stop a write or the others
                log.exception("change subscriber %r failed on %s", fn, change)

    @staticmethod
    def actor() -> str:
        return _actor.get()

    @staticmethod
    @contextlib.contextmanager
    def acting_as(actor: str):
        """Changes made inside the block are published with by=actor (integration | world)."""
        token = _actor.set(actor)
        try:
            yield
        finally:
            _actor.reset(token)
