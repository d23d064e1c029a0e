"""`SystemAdapter`: everything omnirecon knows about one account of one system, in one object.

An adapter owns the connection contract (conn id, pool, connection type, hook class, account settings), what a
snapshot fetches and how it is normalised, how one SKU is read back and how a batch of corrections is written.
The generic machinery (atomic landing, claims, audit, read-back verification) stays in snapshot/ and
remediation/push.py and calls these methods. A second account is another instance with its own `system` name
and conn id (`WalmartAdapter("walmart_ca", conn_id="omnirecon_walmart_ca")`).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from datetime import datetime
from typing import Any, Callable, ClassVar, NamedTuple

from omnirecon.model.values import Diagnosis

log = logging.getLogger(__name__)
FIELD_NAMES = ("host", "login", "password", "extra", "port", "schema")


class WriteResult(NamedTuple):
    """The outcome of one per-SKU write: accepted or not, with the channel's own words and submission id."""
    ok: bool
    detail: str
    external_id: str | None = None


class SystemAdapter:
    platform: ClassVar[str] = ""              # the API family: erp | shopify | amazon | walmart
    conn_type: ClassVar[str] = ""             # Airflow connection type; also the first account's conn id and pool
    hook_path: ClassVar[str] = ""             # hook class, imported on first use (hooks import Airflow)
    account_extras: ClassVar[tuple[str, ...]] = ()   # per-account ids the retailer settings may give
    is_channel: ClassVar[bool] = True         # False for the ERP (the source of truth, never written)
    inclusive_orders_end: ClassVar[bool] = False     # the orders API's window includes its end (whole seconds)
    location_key: ClassVar[str | None] = None        # the settings `locations` key naming this channel's location
    normalizers: ClassVar[dict[str, Callable[[dict], tuple[list, list]]]] = {}   # snapshot kind -> normaliser
    write_paths: ClassVar[dict[str, str]] = {}       # batch method -> push path (batch | per_sku | feed)
    channel_role: ClassVar[str | None] = None        # storefront | marketplace (None: the ERP)
    silent_kinds: ClassVar[frozenset[str]] = frozenset()   # change kinds it sends no notification for (read instead)

    def __init__(self, system: str | None = None, *, conn_id: str | None = None, pool: str | None = None):
        self.system = system or self.platform
        self.conn_id = conn_id or self.conn_type
        self.pool = pool or self.conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.system!r}, conn_id={self.conn_id!r})"

    # -- connection and hook -------------------------------------------------------------
    def hook_class(self) -> type:
        module, _, name = self.hook_path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def hook(self, conn_id: str | None = None, **kwargs):
        """A hook on this account's Airflow connection."""
        return self.hook_class()(conn_id or self.conn_id, **kwargs)

    def hook_from_fields(self, fields: dict, **kwargs):
        """A hook from plain connection fields, e.g. one entry of `Sandbox.connections()`."""
        return self.hook_class().from_fields(**{k: v for k, v in fields.items() if k in FIELD_NAMES}, **kwargs)

    def apply_account_settings(self, hook, settings):
        """Give a hook the retailer's per-account settings (`channels.<system>.<extra>`): the one place that does,
        for snapshot reads, writes and read-backs alike. The connection's own extras win; a connection that names
        a different account than the settings is an error, never a silent choice."""
        if not self.account_extras:
            return hook
        channel = ((settings.get("channels") if settings is not None else None) or {}).get(self.system) or {}
        wanted = {k: str(channel[k]) for k in self.account_extras if channel.get(k)}
        fields = getattr(hook, "fields", None) if hasattr(type(hook), "fields") else None
        extra = (fields or {}).get("extra") or {}
        for name, value in wanted.items():
            have = extra.get(name) or extra.get(f"extra__{getattr(hook, 'conn_type', '')}__{name}")
            if have not in (None, "") and str(have) != value:
                raise ValueError(f"connection {getattr(hook, 'conn_id', self.system)}: extra {name} is {have!r} but "
                                 f"the retailer settings say channels.{self.system}.{name} = {value!r}")
        hook.fallback_extras = wanted
        return hook

    # -- snapshot ------------------------------------------------------------------------
    def fetch_catalog(self, hook) -> dict:
        """Everything inventory and listings snapshots need; one pull serves both kinds."""
        raise NotImplementedError

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        """Orders updated in [start, end) -> (raw, the window end actually pulled)."""
        raise NotImplementedError

    def normalize(self, kind: str, raw: dict) -> tuple[list, list]:
        """Raw payload -> (canonical records, quarantined), named after this account."""
        try:
            fn = self.normalizers[kind]
        except KeyError:
            raise ValueError(f"no normaliser for system {self.system!r}, kind {kind!r}") from None
        records, quarantined = fn(raw)
        if self.system != self.platform:
            records = [self._renamed(r) for r in records]
        return records, quarantined

    def _renamed(self, record):
        more = {"channel": self.system} if getattr(record, "channel", None) == self.platform else {}
        return dataclasses.replace(record, system=self.system, **more)

    # -- notifications ---------------------------------------------------------------------
    def notification_source(self, conn):
        """The verifier of this system's deliveries to the receiver (`verify(raw, headers)`), from its Airflow
        connection's secrets; None when it does not deliver to the receiver or the secret is not set."""
        return None

    def ensure_subscriptions(self, make_hook, conn, receiver_base_url: str,
                             sqs_queue_arn: str | None = None) -> list[tuple[str, str, str]]:
        """Create or keep this system's change-notification subscriptions -> (topic, id, created|kept|recreated)."""
        return []

    def notification_changes(self, topic: str, doc: dict, when: Callable, *, erp_sku: Callable[[str, str], str],
                             item_skus: dict | None = None) -> list:
        """What a stored notification says changed (model/change.py `Change`s; none for a topic not used)."""
        return []

    def quantity_reader(self, hook, settings) -> Callable[[str, list[str]], dict]:
        """read(system, ERP SKUs) -> {SKU: quantity now}: how a change of a `silent_kinds` kind is followed."""
        raise NotImplementedError(f"{self.system} notifies every change; it needs no reader")

    @property
    def listing_diagnosis(self) -> str:
        """The layer a wrong quantity on this channel alone points at (shared/domain.md)."""
        return Diagnosis.L1_STOREFRONT_FEED if self.channel_role == "storefront" else Diagnosis.L2_MARKETPLACE_LISTING

    # -- remediation ---------------------------------------------------------------------
    def push_block(self, settings, channel_location: str, erp_location: str | None) -> str | None:
        """Why a correction at this location must never be pushed (None: it may)."""
        return None

    def location_mapped(self, settings, channel_location: str) -> bool:
        key = self.location_key
        return bool(key) and any(str(loc.get(key)) == channel_location
                                 for loc in settings["locations"] if loc.get(key))

    def batch_method(self, n: int, per_sku_max: int, per_sku_batch: int) -> tuple[str, int]:
        """(write method, corrections per batch) for n planned corrections."""
        raise ValueError(f"no write path for {self.system!r}")

    def write_path(self, method: str | None) -> tuple[str, str]:
        """(method, push path) of a batch; the first listed method is the default."""
        if not self.write_paths:
            raise ValueError(f"no write path for {self.system!r}")
        method = method or next(iter(self.write_paths))
        try:
            return method, self.write_paths[method]
        except KeyError:
            raise ValueError(f"{self.system} has no write method {method!r}") from None

    def read_one(self, hook, c) -> int | None:
        """The channel's current quantity of one correction's SKU at its location (None: not shown)."""
        raise NotImplementedError

    def read_many(self, hook, rows: list) -> dict[int, int | None]:
        """{correction id: quantity now} for read-back; a failed read reads as None."""
        return {c.id: self.safe_read(hook, c) for c in rows}

    def safe_read(self, hook, c) -> int | None:
        try:
            return self.read_one(hook, c)
        except Exception as e:
            log.warning("%s re-read of %s failed: %s", self.system, c.channel_sku, e)
            return None

    def write_one(self, hook, c) -> WriteResult:
        """One per-SKU write of c.to_qty."""
        raise NotImplementedError

    def write_batch(self, hook, rows: list, idempotency_key: str) -> dict[int, tuple[str, str]]:
        """One call for many rows -> {correction id: (status, detail)}; rows left out are retried once."""
        raise NotImplementedError

    batch_call_size: ClassVar[int] = 0        # rows per write_batch call
    feed_max_items: ClassVar[int] = 0         # rows per feed

    def submit_feed(self, hook, rows: list) -> str:
        raise NotImplementedError

    def feed_result(self, hook, feed_id: str) -> dict:
        raise NotImplementedError


def ref_value(c, *names: str, default: Any = None):
    """The first of `names` present in a correction's write ids (its `ref`)."""
    ref = c.ref or {}
    for name in names:
        if ref.get(name):
            return ref[name]
    return default
