"""The domain's closed vocabularies (shared/contracts/outputs.md) as StrEnums.

Members are `str`: they compare equal to, format as and serialise (JSON, CSV, SQL) as their value, so outputs
are unchanged. Constructing one from an unknown value raises UnknownValue naming the allowed values.
"""
from __future__ import annotations

from enum import StrEnum


class UnknownValue(ValueError):
    """A value outside one of the domain's closed vocabularies."""


class _Vocabulary(StrEnum):
    @classmethod
    def _missing_(cls, value):
        raise UnknownValue(f"unknown {cls.__name__} {value!r} (expected one of: {', '.join(cls)})")


class Check(_Vocabulary):
    INVENTORY_DRIFT = "inventory_drift"
    ORDER_MISSING = "order_missing"
    ORDER_STATUS_MISMATCH = "order_status_mismatch"
    ORDER_SEQUENCE = "order_sequence"
    FRESHNESS = "freshness"
    MAPPING = "mapping"
    LISTING_STATE = "listing_state"
    LOW_STOCK = "low_stock"
    TRIGGER_GAP = "trigger_gap"             # a change a downstream system did not follow in time (world.md)


LIVE_CHECKS = (Check.TRIGGER_GAP,)          # found by the live path (live/chain.py), not by a reconcile run
ORDER_CHECKS = (Check.ORDER_MISSING, Check.ORDER_STATUS_MISMATCH, Check.ORDER_SEQUENCE)


class Severity(_Vocabulary):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 is the most severe."""
        return list(Severity).index(self)


def severity_rank(value, unknown: int = 3) -> int:
    """Sort key of a severity value (unknown values last)."""
    try:
        return Severity(value).rank
    except ValueError:
        return unknown


class Diagnosis(_Vocabulary):
    L1_STOREFRONT_FEED = "L1_storefront_feed"
    L2_MARKETPLACE_LISTING = "L2_marketplace_listing"
    L3_CONNECTOR = "L3_connector"
    L4_ERP_CONFIG = "L4_erp_config"
    SKU_MAPPING = "sku_mapping"
    LOCATION_MAPPING = "location_mapping"
    IN_FLIGHT = "in_flight"
    UNKNOWN = "unknown"


class Action(_Vocabulary):
    PUSH = "push"
    APPROVAL = "approval"
    ALERT = "alert"
    NONE = "none"


PUSH_ACTIONS = (Action.PUSH, Action.APPROVAL)


class CorrectionStatus(_Vocabulary):
    PLANNED = "planned"                      # ready to push (internal; never in a finished run's output)
    VERIFIED = "verified"
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    BLOCKED_GUARDRAIL = "blocked_guardrail"
    SKIPPED_CHANGED = "skipped_changed"
    FAILED = "failed"
    SUPERSEDED = "superseded"                # an open request replaced by one with a new target
    WITHDRAWN = "withdrawn"                  # an open request whose drift cleared


class OrderStatus(_Vocabulary):
    """The canonical order lifecycle, in forward order; cancelled is terminal."""
    PLACED = "placed"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"

    @property
    def rank(self) -> int:
        return list(OrderStatus).index(self)
