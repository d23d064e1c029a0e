"""The ledger: every run, snapshot, quarantined row, finding, correction, approval and external write.

Schema changes go through Alembic (ledger/migrations); never create tables any other way.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, SmallInteger, String, Text,
                        UniqueConstraint)
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from omnirecon.model.sharding import sku_bucket
from omnirecon.model.values import Action, Check, CorrectionStatus, Diagnosis, OrderStatus, Severity
from omnirecon.timeutil import utcnow

ID = BigInteger().with_variant(Integer, "sqlite")   # SQLite autoincrement needs INTEGER


class Vocabulary(TypeDecorator):
    """A String column that holds one value of a StrEnum (model/values.py): an unknown value is rejected on
    write (UnknownValue names the allowed ones); reads return the plain string."""
    impl = String
    cache_ok = True

    def __init__(self, enum, length: int):
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value, dialect):
        return None if value is None else self.enum(value).value


def _bucket_of_sku(context) -> int | None:
    """The shard key of a row inserted without one: crc32(sku) mod 1024 (model/sharding.py); None for a finding
    state of no SKU."""
    sku = context.get_current_parameters().get("sku")
    return None if sku is None else sku_bucket(sku)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


class Run(Base):
    """One DAG run (snapshot, reconcile, remediate, report) as the ledger sees it."""
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_kind_status_finished", "kind", "status", "finished_at"),)   # the latest of a kind
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    dag_id: Mapped[str | None] = mapped_column(String(250))
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    data_interval_start: Mapped[datetime | None]
    data_interval_end: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")   # running | success | failed
    mode: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    params: Mapped[dict | None]
    stats: Mapped[dict | None]


class Snapshot(Base):
    """One system's data of one kind, landed atomically: rows are visible only once status is final."""
    __tablename__ = "snapshots"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    system: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))            # inventory | listings | orders
    status: Mapped[str] = mapped_column(String(16))          # running | complete | unusable | failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    fetched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    window_start: Mapped[datetime | None]                    # orders: the updated-at window pulled
    window_end: Mapped[datetime | None]
    source_high_water: Mapped[datetime | None]               # newest last-update time the source reported
    rows_in: Mapped[int] = mapped_column(default=0)
    rows_valid: Mapped[int] = mapped_column(default=0)
    rows_quarantined: Mapped[int] = mapped_column(default=0)
    api_calls: Mapped[int] = mapped_column(default=0)
    retries: Mapped[int] = mapped_column(default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict | None]
    __table_args__ = (Index("ix_snapshots_latest", "system", "kind", "status", "id"),)


class InventoryRow(Base):
    __tablename__ = "inventory_rows"
    __table_args__ = (Index("ix_inventory_rows_snapshot_bucket", "snapshot_id", "sku_bucket"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    system: Mapped[str] = mapped_column(String(16))
    sku: Mapped[str] = mapped_column(String(255))
    sku_bucket: Mapped[int] = mapped_column(SmallInteger, default=_bucket_of_sku)   # model/sharding.py
    location: Mapped[str] = mapped_column(String(255))
    available: Mapped[int | None]
    on_hand: Mapped[int | None]
    committed: Mapped[int | None]
    on_order: Mapped[int | None]
    reserved: Mapped[int | None]
    updated_at: Mapped[datetime | None]
    ref: Mapped[dict | None]


class ListingRow(Base):
    __tablename__ = "listing_rows"
    __table_args__ = (Index("ix_listing_rows_snapshot_bucket", "snapshot_id", "sku_bucket"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    system: Mapped[str] = mapped_column(String(16))
    sku: Mapped[str] = mapped_column(String(255))
    sku_bucket: Mapped[int] = mapped_column(SmallInteger, default=_bucket_of_sku)
    state: Mapped[str] = mapped_column(String(16))
    raw_status: Mapped[str | None] = mapped_column(String(255))
    issues: Mapped[list | None]
    inventory_policy: Mapped[str | None] = mapped_column(String(16))
    tracked: Mapped[bool | None] = mapped_column(Boolean)
    item_type: Mapped[str | None] = mapped_column(String(32))
    is_inactive: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime | None]
    ref: Mapped[dict | None]


class OrderRow(Base):
    __tablename__ = "order_rows"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    system: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str] = mapped_column(String(255), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(Vocabulary(OrderStatus, 24))
    raw_status: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    erp_ref: Mapped[str | None] = mapped_column(String(255))
    fulfilled_at: Mapped[datetime | None]
    fulfillment_channel: Mapped[str | None] = mapped_column(String(8))
    lines: Mapped[list | None]


class QuarantinedRow(Base):
    """A row that failed validation, with the reason. in = valid + quarantined, always."""
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    system: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    row_index: Mapped[int]
    key: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiEvent(Base):
    """Errors, retries and throttles seen while talking to a system (evidence for findings)."""
    __tablename__ = "api_events"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    snapshot_id: Mapped[int | None]
    system: Mapped[str] = mapped_column(String(16))
    operation: Mapped[str] = mapped_column(String(128))
    status_code: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(16))        # retry | throttled | error | ok
    message: Mapped[str | None] = mapped_column(Text)


class Finding(Base):
    """One finding of one reconciliation run (what findings.csv exports).
    Written only by ledger/finding_store.py (persist, shard clean-up, escalation of an unapplied write)."""
    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)   # stable across runs
    check: Mapped[str] = mapped_column(Vocabulary(Check, 32))
    severity: Mapped[str] = mapped_column(Vocabulary(Severity, 16))
    channel: Mapped[str] = mapped_column(String(16))
    sku: Mapped[str | None] = mapped_column(String(255))
    location: Mapped[str | None] = mapped_column(String(255))
    order_id: Mapped[str | None] = mapped_column(String(255))
    expected: Mapped[str | None] = mapped_column(String(64))
    observed: Mapped[str | None] = mapped_column(String(64))
    delta: Mapped[int | None]
    diagnosis: Mapped[str] = mapped_column(Vocabulary(Diagnosis, 32))
    action: Mapped[str] = mapped_column(Vocabulary(Action, 16))
    detail: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict | None]
    lifecycle: Mapped[str] = mapped_column(String(16), default="new")  # new | open (seen before)
    shard: Mapped[str] = mapped_column(String(16), default="all", server_default="all")    # the task that found it: all | global | 3/8
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FindingState(Base):
    """A finding's life across runs, keyed by fingerprint: opened, still open, resolved; alerting state.
    Written only by ledger/finding_store.py (lifecycle from the checks, alert bookkeeping, escalation)."""
    __tablename__ = "finding_states"
    # a shard's persist reads the open states of its checks and buckets only (migration 0006)
    __table_args__ = (Index("ix_finding_states_status_check_bucket", "status", "check", "sku_bucket"),)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    check: Mapped[str] = mapped_column(Vocabulary(Check, 32))
    channel: Mapped[str] = mapped_column(String(16))
    sku: Mapped[str | None] = mapped_column(String(255))
    sku_bucket: Mapped[int | None] = mapped_column(SmallInteger, default=_bucket_of_sku)   # model/sharding.py
    order_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))          # open | resolved
    severity: Mapped[str] = mapped_column(Vocabulary(Severity, 16))
    first_seen_at: Mapped[datetime]
    first_seen_run: Mapped[str] = mapped_column(String(128))
    last_seen_at: Mapped[datetime]
    last_seen_run: Mapped[str] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None]
    last_alert_at: Mapped[datetime | None]
    alerts_sent: Mapped[int] = mapped_column(default=0)
    resolved_notice_sent: Mapped[bool] = mapped_column(Boolean, default=False)


OPEN_REQUEST = "pending_approval"    # at most one correction per (channel, sku, location) in this status
NOTHING_WRITTEN = "write:none"       # external_id of a correction whose fresh read found the target already there


class Correction(Base):
    """The outbox: written before any call; the idempotency key makes retries and re-runs safe.
    One open approval request per (channel, sku, location): a partial unique index (migration 0004)."""
    __tablename__ = "corrections"
    __table_args__ = (Index("ux_corrections_open_request", "channel", "sku", "location", unique=True,
                            sqlite_where=text(f"status = '{OPEN_REQUEST}'"),
                            postgresql_where=text(f"status = '{OPEN_REQUEST}'")),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    sku: Mapped[str] = mapped_column(String(255))
    channel_sku: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(String(255))
    from_qty: Mapped[int]
    to_qty: Mapped[int]
    status: Mapped[str] = mapped_column(Vocabulary(CorrectionStatus, 24), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[dict | None]                                 # ids the channel needs for the write
    snapshot_id: Mapped[int | None]
    batch: Mapped[int | None]
    external_id: Mapped[str | None] = mapped_column(String(255))   # feed id, submission id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    pushed_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    correction_id: Mapped[int] = mapped_column(ForeignKey("corrections.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decision: Mapped[str | None] = mapped_column(String(16))   # approved | rejected | timeout | superseded | withdrawn
    decided_by: Mapped[str | None] = mapped_column(String(255))
    asked_in: Mapped[str | None] = mapped_column(String(255))   # the approvals run whose request is open
    comment: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Every external call that changed (or tried to change) state, and every correction state change."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(64))            # omnirecon task, user name, ...
    system: Mapped[str | None] = mapped_column(String(16))
    operation: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(500))
    correction_id: Mapped[int | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    request: Mapped[dict | None]                              # never credentials
    response_status: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(24))              # opened | reminder | resolved | guardrail | write_failed
    transport: Mapped[str] = mapped_column(String(16))         # email | slack | log
    run_id: Mapped[str | None] = mapped_column(String(128))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    subject: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list | None]


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    report_date: Mapped[str] = mapped_column(String(10), index=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    generated_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))            # generated | sent | failed
    recipients: Mapped[list | None]
    summary: Mapped[dict | None]
    __table_args__ = (UniqueConstraint("report_date", "run_id"),)


class Notification(Base):
    """A platform's change notification as received: stored (durably) before the receiver answers 2xx.

    Owner: omnirecon.live.inbox. One row per (source, event_id): a redelivery or duplicate is not stored twice."""
    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_notifications_source_event"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))                    # shopify | amazon | walmart | erp
    event_id: Mapped[str] = mapped_column(String(255))                 # the platform's own id for the event
    topic: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime | None]                               # when the platform says it happened
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    body: Mapped[str] = mapped_column(Text)                            # the raw body as verified (UTF-8)
    headers: Mapped[dict | None]                                       # the non-secret headers that identify it
    processed_at: Mapped[datetime | None] = mapped_column(index=True)  # taken into a live reconcile
    quarantined: Mapped[str | None] = mapped_column(Text)              # why an authentic message is unusable


class HopWindow(Base):
    """What the trigger chain looked like for one hop (source -> target, kind) over one window: the history that
    shows a hop's behaviour over days. Owner: omnirecon.live.chain."""
    __tablename__ = "hop_windows"
    __table_args__ = (Index("ix_hop_windows_hop", "from_system", "to_system", "kind", "window_to"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    from_system: Mapped[str] = mapped_column(String(16))
    to_system: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))                      # inventory | orders | status
    window_from: Mapped[datetime]
    window_to: Mapped[datetime]
    mechanism: Mapped[str] = mapped_column(String(16))                 # event | poll | unknown
    poll_interval_s: Mapped[float | None] = mapped_column(Float)
    resolution_s: Mapped[float | None] = mapped_column(Float)
    latency_p50_s: Mapped[float | None] = mapped_column(Float)
    latency_p95_s: Mapped[float | None] = mapped_column(Float)
    latency_max_s: Mapped[float | None] = mapped_column(Float)
    changes_seen: Mapped[int] = mapped_column(Integer, default=0)
    followed: Mapped[int] = mapped_column(Integer, default=0)
    missed: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))                     # ok | slow | broken | unknown
    since: Mapped[datetime | None]
    diagnosis: Mapped[str | None] = mapped_column(Vocabulary(Diagnosis, 32))
    exposure: Mapped[dict | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TriggerDetection(Base):
    """A change at a source that a target did not follow within propagation_sla_seconds (detections.csv).
    One row per hop and SKU or order and source change. Owner: omnirecon.live.chain."""
    __tablename__ = "trigger_detections"
    __table_args__ = (UniqueConstraint("hop", "kind", "key", "changed_at", name="uq_trigger_detections_change"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    hop: Mapped[str] = mapped_column(String(40))                       # from->to, e.g. erp->walmart
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))                      # the SKU or order id
    sku: Mapped[str | None] = mapped_column(String(255))
    order_id: Mapped[str | None] = mapped_column(String(255))
    changed_at: Mapped[datetime]                                       # the source change's own time
    detected_at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(Vocabulary(Action, 16))
    expected: Mapped[str | None] = mapped_column(String(64))
    observed: Mapped[str | None] = mapped_column(String(64))
    corrected_at: Mapped[datetime | None]
