"""Read what the checks need from the ledger into pandas frames (latest complete snapshots + history)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import text

from omnirecon.checks.scope import EVERYTHING, Scope
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.model.canonical import SNAPSHOT_KINDS, SYSTEMS
from omnirecon.model.sharding import WHOLE, Shard

log = logging.getLogger(__name__)

# only the columns the checks read, per kind and system class ("erp" | "channel")
INVENTORY_COLS = {"erp": ["sku", "location", "available", "on_hand", "committed", "updated_at"],
                  "channel": ["id", "sku", "location", "available", "updated_at"]}
LISTING_COLS = {"erp": ["sku", "item_type", "is_inactive"],
                "channel": ["sku", "state", "inventory_policy", "tracked", "issues"]}
ORDER_COLS = ["order_id", "channel", "status", "created_at", "updated_at", "fulfilled_at", "fulfillment_channel",
              "erp_ref", "lines"]
HISTORY_DEPTH = 3            # earlier complete snapshots read per (system, kind)
ORDER_HORIZON = timedelta(days=30)   # order snapshots are incremental windows: merge those landed this recently
API_EVENT_WINDOW = timedelta(hours=24)


@dataclass
class SnapshotInfo:
    id: int
    system: str
    kind: str
    status: str
    fetched_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, snap: m.Snapshot) -> "SnapshotInfo":
        return cls(snap.id, snap.system, snap.kind, snap.status, _aware(snap.fetched_at or snap.finished_at), snap.error)


@dataclass
class LedgerView:
    """The ledger as the checks see it at one moment."""
    now: datetime
    latest: dict = field(default_factory=dict)     # (system, kind) -> SnapshotInfo of the latest complete snapshot
    attempts: dict = field(default_factory=dict)   # (system, kind) -> SnapshotInfo of the latest attempt
    frames: dict = field(default_factory=dict)     # (system, kind) -> DataFrame of the latest complete snapshot
    history: dict = field(default_factory=dict)    # (system, kind) -> [(SnapshotInfo, DataFrame)], newest first
    api_events: pd.DataFrame = field(default_factory=pd.DataFrame)

    def frame(self, system: str, kind: str) -> pd.DataFrame | None:
        return self.frames.get((system, kind))

    def usable(self, system: str, kind: str) -> bool:
        """The latest attempt is complete: data is current and whole."""
        att = self.attempts.get((system, kind))
        return att is not None and att.status == "complete"


def _aware(dt):
    if dt is None:
        return None
    return pd.Timestamp(dt).tz_localize("UTC").to_pydatetime() if dt.tzinfo is None else dt


def _ts(series: pd.Series) -> pd.Series:
    """Timestamps (UTC), each distinct value parsed once (a snapshot's rows share few of them)."""
    codes, uniques = pd.factorize(series)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), utc=True, format="ISO8601", errors="coerce")
    return pd.Series(parsed.array.take(codes, allow_fill=True), index=series.index, name=series.name)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _read(conn, table: str, sql: str, cols: list[str], arrow: bool = False, **params) -> pd.DataFrame:
    """Rows of one ledger table as a frame: with `arrow`, from a SQLite file through Arrow (ADBC) when it can, else
    through the DB-API cursor (no per-row SQLAlchemy Row objects either way: this reads ~1M rows)."""
    compiled = text(sql).bindparams(**params).compile(conn.engine)
    if conn.dialect.paramstyle == "qmark":
        args = [compiled.params[k] for k in compiled.positiontup]
        frame = _read_arrow(conn, str(compiled), args, cols, _numeric(table, cols)) if arrow else None
        if frame is not None:
            return frame
    else:
        args = compiled.params
    raw = conn.connection.driver_connection.cursor()
    try:
        raw.execute(str(compiled), args)
        rows = raw.fetchall()
    finally:
        raw.close()
    return pd.DataFrame.from_records(rows, columns=cols)


ARROW_BATCH_ROWS = 1 << 20   # the SQLite ADBC driver infers a column's type from its first batch: make it large
ARROW_MIN_ROWS = 20_000      # a snapshot smaller than this reads faster through the cursor (no second connection)


def _sqlite_file(conn) -> str | None:
    url = conn.engine.url
    if conn.dialect.name != "sqlite" or url.query or not url.database or url.database == ":memory:":
        return None
    return url.database


def _numeric(table: str, cols: list[str]) -> set:
    """The columns the ledger's model declares numeric (integers, booleans, floats)."""
    def python_type(column):
        try:
            return column.type.python_type
        except NotImplementedError:
            return None
    columns = m.Base.metadata.tables[table].columns
    return {c for c in cols if python_type(columns[c]) in (int, float, bool)}


def _read_arrow(conn, sql: str, args: list, cols: list[str], numeric: set = frozenset()) -> pd.DataFrame | None:
    """The rows of a SQLite ledger file through the Arrow ADBC driver: columns built in C, ~3x less CPU than
    1M Python tuples. The frame equals the cursor's (text -> str objects, integers with NULLs -> float64 NaN,
    an all-NULL column -> None). None when the ledger is no file or Arrow would not give what the cursor gives:
    a type it cannot infer, or a `numeric` column it made text (SQLite keeps text put in a numeric column, and
    Arrow then turns the whole column into text); the caller reads those rows through the cursor instead."""
    path = _sqlite_file(conn)
    if path is None or not all(isinstance(a, (int, str)) for a in args):
        return None
    try:
        import adbc_driver_sqlite.dbapi as adbc
        import pyarrow as pa
        from adbc_driver_sqlite import StatementOptions
        with adbc.connect(path) as db, db.cursor() as cur:
            cur.adbc_statement.set_options(**{StatementOptions.BATCH_ROWS.value: str(ARROW_BATCH_ROWS)})
            cur.execute(sql, args)
            table = cur.fetch_arrow_table()
    except Exception as e:   # noqa: BLE001 - the cursor reads what Arrow cannot
        log.debug("Arrow read of %s fell back to the cursor: %s", path, e)
        return None
    if not len(table):
        return pd.DataFrame.from_records([], columns=cols)
    if any(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
           for c, t in zip(cols, table.schema.types) if c in numeric):
        return None
    frame = table.to_pandas()
    frame.columns = cols
    for c, column in zip(cols, table.columns):
        if column.null_count == len(table):
            frame[c] = pd.Series([None] * len(table), dtype=object)
    return frame


def _flag(series: pd.Series) -> pd.Series:
    """0/1 or bool -> True/False objects, None where missing."""
    return series.map({0: False, 1: True}).astype(object).where(series.notna(), None)


def _read_shard(conn, table: str, cols: list[str], snapshot_id: int, shard: Shard, extra: set) -> pd.DataFrame:
    """A snapshot's rows of one shard (indexed on snapshot_id, sku_bucket), plus the named extra SKUs."""
    sql = f"SELECT {', '.join(cols)} FROM {table} WHERE snapshot_id = :sid"
    if conn.dialect.name == "sqlite":
        lo, hi = conn.execute(text(f"SELECT min(id), max(id) FROM {table} WHERE snapshot_id = :sid"),
                              {"sid": snapshot_id}).one()
        lo, hi = (lo, hi) if lo is not None else (0, -1)
        arrow = hi - lo + 1 >= ARROW_MIN_ROWS
        if shard.whole:
            # a snapshot's rows were inserted together: scan their id range in the table itself (the same rows in
            # the same order as the snapshot_id index gives them, without a lookup of every row through the index)
            return _read(conn, table, f"SELECT {', '.join(cols)} FROM {table} WHERE id BETWEEN :lo AND :hi "
                         "AND +snapshot_id = :sid", cols, arrow=arrow, lo=lo, hi=hi, sid=snapshot_id)
    else:
        arrow = False
    if shard.whole:
        return _read(conn, table, sql, cols, sid=snapshot_id)
    buckets = ", ".join(str(int(b)) for b in shard.buckets())
    parts = [_read(conn, table, f"{sql} AND sku_bucket IN ({buckets})", cols, arrow=arrow, sid=snapshot_id)]
    names = sorted(extra)
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        marks = ", ".join(f":x{k}" for k in range(len(chunk)))
        parts.append(_read(conn, table, f"{sql} AND sku IN ({marks}) AND sku_bucket NOT IN ({buckets})", cols,
                           sid=snapshot_id, **{f"x{k}": v for k, v in enumerate(chunk)}))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def read_rows(conn, kind: str, snapshot_id: int, system: str = "erp", shard: Shard = WHOLE,
              extra_skus: set = frozenset()) -> pd.DataFrame:
    side = "erp" if system == "erp" else "channel"
    if kind == "inventory":
        cols = INVENTORY_COLS[side]
        df = _read_shard(conn, "inventory_rows", cols, snapshot_id, shard, extra_skus)
        for c in ("available", "on_hand", "committed"):
            if c in df:
                df[c] = pd.to_numeric(df[c], errors="coerce")
        df["updated_at"] = _ts(df["updated_at"])
        return df
    if kind == "listings":
        cols = LISTING_COLS[side]
        df = _read_shard(conn, "listing_rows", cols, snapshot_id, shard, extra_skus)
        if "issues" in df:
            has = df["issues"].notna()
            df.loc[has, "issues"] = df.loc[has, "issues"].map(_json)
        for c in ("tracked", "is_inactive"):
            if c in df:
                df[c] = _flag(df[c])
        return df
    df = _read(conn, "order_rows", f"SELECT {', '.join(ORDER_COLS)} FROM order_rows WHERE snapshot_id = :sid",
               ORDER_COLS, sid=snapshot_id)
    df["lines"] = df["lines"].map(lambda v: _json(v) or [])
    for c in ("created_at", "updated_at", "fulfilled_at"):
        df[c] = _ts(df[c])
    return df


def read_order_state(conn, s, system: str, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders are pulled incrementally (one updated-at window per run), so the current state of an order is
    its newest row across the complete order snapshots of the horizon; the previous state is the one before."""
    ids = queries.complete_snapshot_ids(s, system, "orders", finished_since=now - ORDER_HORIZON)
    cols = ORDER_COLS + ["snapshot_id"]
    if not ids:
        latest = queries.latest_snapshot(s, system, "orders")
        ids = [latest.id] if latest else []
    frames = []
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        marks = ", ".join(f":s{k}" for k in range(len(part)))
        frames.append(_read(conn, "order_rows", f"SELECT {', '.join(cols)} FROM order_rows WHERE snapshot_id IN ({marks})",
                            cols, **{f"s{k}": v for k, v in enumerate(part)}))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    df["lines"] = df["lines"].map(lambda v: _json(v) or [])
    for c in ("created_at", "updated_at", "fulfilled_at"):
        df[c] = _ts(df[c])
    df = df.sort_values("snapshot_id", ascending=False, kind="stable")
    dup = df.duplicated(["channel", "order_id"], keep="first")
    current = df[~dup].drop(columns=["snapshot_id"]).reset_index(drop=True)
    previous = df[dup].drop_duplicates(["channel", "order_id"], keep="first").drop(columns=["snapshot_id"])
    return current, previous.reset_index(drop=True)


def load_view(ledger, now: datetime, systems=SYSTEMS, history_kinds=("inventory", "orders"),
              scope: Scope = EVERYTHING, settings=None) -> LedgerView:
    """The latest snapshots (and history) of the given systems. A `skus` scope reads only its shard's inventory
    and listing rows; a `global` scope reads none (its checks need snapshot metadata and orders only)."""
    view = LedgerView(now=now)
    extra = scope.extra_skus(settings) if settings is not None else {}
    row_kinds = () if scope.part == "global" else ("inventory", "listings")

    def rows(kind, snapshot_id, system):
        return read_rows(conn, kind, snapshot_id, system, scope.shard, extra.get(system, set()))
    with ledger.engine.connect() as conn, ledger.session() as s:
        for system in systems:
            for kind in SNAPSHOT_KINDS:
                snaps = queries.recent_attempts(s, system, kind, 20)
                if not snaps:
                    continue
                view.attempts[(system, kind)] = SnapshotInfo.of(snaps[0])
                complete = [SnapshotInfo.of(x) for x in snaps if x.status == "complete"]
                if not complete:
                    continue
                view.latest[(system, kind)] = complete[0]
                if kind == "orders":
                    current, previous = read_order_state(conn, s, system, now)
                    view.frames[(system, kind)] = current
                    if kind in history_kinds and len(previous):
                        view.history[(system, kind)] = [(complete[1] if len(complete) > 1 else complete[0], previous)]
                    continue
                if kind not in row_kinds:
                    continue
                view.frames[(system, kind)] = rows(kind, complete[0].id, system)
                if kind in history_kinds:
                    view.history[(system, kind)] = [(info, rows(kind, info.id, system))
                                                    for info in complete[1:1 + HISTORY_DEPTH]]
        events = queries.api_errors(s, now - API_EVENT_WINDOW, 500)
        view.api_events = pd.DataFrame([{"system": e.system, "operation": e.operation, "status_code": e.status_code,
                                         "outcome": e.outcome, "message": e.message,
                                         "at": _aware(e.at)} for e in events],
                                       columns=["system", "operation", "status_code", "outcome", "message", "at"])
    return view


def catalog_size(ledger) -> int:
    """Distinct SKUs in the latest complete ERP inventory snapshot (0 when there is none)."""
    latest = ledger.latest_snapshot("erp", "inventory")
    if latest is None:
        return 0
    with ledger.engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(DISTINCT sku) FROM inventory_rows WHERE snapshot_id = :sid"),
                                {"sid": latest.id}).scalar() or 0)


def inventory_refs(ledger, row_ids: list[int]) -> dict[int, dict]:
    """The write-back refs of the given inventory rows (read only for rows that need a push)."""
    out: dict[int, dict] = {}
    ids = [int(i) for i in row_ids]
    with ledger.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            part = ids[i:i + 900]
            marks = ", ".join(f":i{k}" for k in range(len(part)))
            rows = conn.execute(text(f"SELECT id, ref FROM inventory_rows WHERE id IN ({marks})"),
                                {f"i{k}": v for k, v in enumerate(part)}).fetchall()
            out.update({r[0]: _json(r[1]) or {} for r in rows})
    return out
