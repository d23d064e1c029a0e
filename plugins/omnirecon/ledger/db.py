"""Ledger access: engine from the `omnirecon_ledger` Airflow connection, Alembic migrations, atomic snapshots."""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
import io
import json
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from omnirecon.config import project_home
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.model.sharding import sku_bucket
from omnirecon.timeutil import utcnow

log = logging.getLogger(__name__)
LEDGER_CONN_ID = "omnirecon_ledger"
ROW_MODELS = {"inventory": m.InventoryRow, "listings": m.ListingRow, "orders": m.OrderRow}


def default_sqlite_url() -> str:
    path = project_home() / "data" / "ledger.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def url_from_connection(conn) -> str:
    """SQLAlchemy URL from an Airflow Connection (sqlite: host is the file path; postgres: the usual fields)."""
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    ctype = (conn.conn_type or "").lower()
    if ctype == "sqlite":
        path = conn.host or str(project_home() / "data" / "ledger.db")
        return f"sqlite:///{path}"
    if ctype in ("postgres", "postgresql"):
        from sqlalchemy.engine import URL
        return URL.create("postgresql+psycopg2", username=conn.login or None, password=conn.password or None,
                          host=conn.host or "127.0.0.1", port=conn.port or 5432,
                          database=conn.schema or "omnirecon").render_as_string(hide_password=False)
    raise ValueError(f"connection {LEDGER_CONN_ID}: unsupported conn_type {conn.conn_type!r} (sqlite or postgres; "
                     "the ledger never falls back to a local file for a connection that exists)")


def ledger_url() -> str:
    """OMNIRECON_LEDGER_URL, else the Airflow connection `omnirecon_ledger`, else (no such connection) data/ledger.db.
    A connection that exists but cannot be read or used (unsupported type, a typo) is an error, never SQLite."""
    if os.environ.get("OMNIRECON_LEDGER_URL"):
        return os.environ["OMNIRECON_LEDGER_URL"]
    from omnirecon.connections import ConnectionProblem, find_connection
    conn = find_connection(LEDGER_CONN_ID)
    if conn is None:
        log.debug("no connection %s; using the default SQLite file", LEDGER_CONN_ID)
        return default_sqlite_url()
    try:
        return url_from_connection(conn)
    except ValueError as e:
        raise ConnectionProblem(str(e)) from None


def _json_safe(value):
    """What JSON columns may hold on every backend: NaN/NaT -> null (PostgreSQL rejects NaN), numpy scalars ->
    Python numbers, datetimes -> ISO-8601. Evidence comes from pandas frames, so all of these occur."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return None if value != value else value.isoformat()   # NaT compares unequal to itself
    item = getattr(value, "item", None)                        # numpy scalar
    if callable(item):
        return _json_safe(item())
    return str(value)


def json_dumps(value) -> str:
    """JSON text of a value for a JSON column. Values already plain (str keys, finite floats; evidence is built so)
    are dumped as they are; anything else (NaN, numpy scalars, datetimes) goes through _json_safe first."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_json_safe(value), allow_nan=False)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60}, future=True, json_serializer=json_dumps)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True, future=True, json_serializer=json_dumps)


class Ledger:
    def __init__(self, url: str | None = None):
        self.url = url or ledger_url()
        self.engine = _make_engine(self.url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- schema ------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.attributes["connection_url"] = self.url
        alembic_log = logging.getLogger("alembic")
        level = alembic_log.level
        alembic_log.setLevel(logging.WARNING)   # "Context impl ..." lines are noise on every start
        try:
            with self._migration_lock(), self.engine.begin() as conn:
                if self.dialect == "postgresql":   # parallel tasks on a fresh database migrate one at a time
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7468011)")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            alembic_log.setLevel(level)

    @contextmanager
    def _migration_lock(self):
        """SQLite: an exclusive file lock beside the database, so parallel first runs migrate once."""
        if self.dialect != "sqlite" or not self.engine.url.database or self.engine.url.database == ":memory:":
            yield
            return
        import fcntl
        with open(f"{self.engine.url.database}.migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def session(self):
        with self.Session() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    # -- runs --------------------------------------------------------------------------
    def begin_run(self, run_id: str, kind: str, **fields) -> m.Run:
        """Create the run, or refresh it for a retried task or a sibling task of the same run (safe when
        several tasks of one DAG run start at the same moment)."""
        from sqlalchemy.exc import IntegrityError
        for attempt in (1, 2):
            try:
                with self.session() as s:
                    run = s.get(m.Run, run_id)
                    if run is None:
                        run = m.Run(id=run_id, kind=kind, **fields)
                        s.add(run)
                    else:
                        for k, v in fields.items():
                            setattr(run, k, v)
                        run.status = "running"
                    return run
            except IntegrityError:
                if attempt == 2:
                    raise   # not a race: a real constraint problem

    def finish_run(self, run_id: str, status: str, stats: dict | None = None) -> None:
        with self.session() as s:
            s.execute(update(m.Run).where(m.Run.id == run_id).values(status=status, finished_at=utcnow(), stats=stats))

    def keep_findings_of(self, run_id: str, shards: list[str]) -> int:
        """Drop a run's findings found by shards other than these (the run was re-split); the number dropped.
        The write is the finding store's (ledger/finding_store.py)."""
        from omnirecon.ledger.finding_store import keep_findings_of
        return keep_findings_of(self, run_id, shards)

    # -- snapshots ---------------------------------------------------------------------
    def land_snapshot(self, *, run_id: str, system: str, kind: str, records: list, quarantined: list,
                      stats: dict, max_quarantine_fraction: float = 0.05) -> m.Snapshot:
        """Write a complete snapshot and its rows in ONE transaction: visible whole, or not at all."""
        model = ROW_MODELS[kind]
        rows_in = len(records) + len(quarantined)
        frac = (len(quarantined) / rows_in) if rows_in else 0.0
        status = "unusable" if frac > max_quarantine_fraction else "complete"
        t0 = time.monotonic()
        with self.session() as s:
            snap = m.Snapshot(run_id=run_id, system=system, kind=kind, status=status,
                              rows_in=rows_in, rows_valid=len(records), rows_quarantined=len(quarantined),
                              finished_at=utcnow(), **stats)
            if status == "unusable":
                snap.error = (f"{len(quarantined)} of {rows_in} rows quarantined ({frac:.1%}) "
                              f"> max_quarantine_fraction {max_quarantine_fraction:.1%}")
            s.add(snap)
            s.flush()
            self.insert_records(s, model, records, snapshot_id=snap.id)
            self.bulk_insert(s, m.QuarantinedRow, [
                dict(snapshot_id=snap.id, system=system, kind=kind, row_index=q.row_index, key=q.key,
                     reason=q.reason, payload=q.payload if isinstance(q.payload, dict) else {"raw": q.payload})
                for q in quarantined])
        log.info("landed %s %s snapshot %s: %d valid, %d quarantined, status %s (%.2fs insert)",
                 system, kind, snap.id, len(records), len(quarantined), status, time.monotonic() - t0)
        return snap

    def insert_records(self, s: Session, model, records: list, **common) -> None:
        """Canonical records (one dataclass type) as rows of `model`, in the session's transaction: PostgreSQL
        COPY, else one executemany. Fields are read shallowly (no `asdict` deep copy: the rows are written at once)."""
        if not records:
            return
        cols = model.__table__.columns
        names = [f.name for f in fields(records[0]) if f.name in cols and f.name not in common]
        rows = [dict(common, **{n: getattr(r, n) for n in names}) for r in records]
        if "sku_bucket" in cols:   # the shard key (model/sharding.py), from the SKU as the system shows it
            for row in rows:
                row["sku_bucket"] = sku_bucket(row["sku"])
            names.append("sku_bucket")
        if self.dialect == "postgresql":
            copy_rows(s, model.__table__, list(common) + names, rows)
        else:
            s.execute(insert(model.__table__), rows)

    def bulk_insert(self, s: Session, model, rows: list[dict], chunk: int = 5000) -> None:
        cols = set(model.__table__.columns.keys())
        for i in range(0, len(rows), chunk):
            part = [{k: v for k, v in r.items() if k in cols} for r in rows[i:i + chunk]]
            if part:
                s.execute(insert(model), part)

    def fail_snapshot(self, *, run_id: str, system: str, kind: str, error: str, stats: dict) -> m.Snapshot:
        with self.session() as s:
            snap = m.Snapshot(run_id=run_id, system=system, kind=kind, status="failed", error=error[:4000],
                              finished_at=utcnow(), **stats)
            s.add(snap)
        return snap

    def latest_snapshot(self, system: str, kind: str) -> m.Snapshot | None:
        """The latest complete snapshot of a system and kind (ledger/queries.py)."""
        with self.session() as s:
            return queries.latest_snapshot(s, system, kind)

    def latest_attempt(self, system: str, kind: str) -> m.Snapshot | None:
        with self.session() as s:
            return queries.latest_attempt(s, system, kind)

    # -- evidence / audit --------------------------------------------------------------
    def api_event(self, *, system: str, operation: str, outcome: str, status_code: int | None = None,
                  message: str | None = None, run_id: str | None = None, snapshot_id: int | None = None,
                  at: datetime | None = None) -> None:
        with self.session() as s:
            s.add(m.ApiEvent(system=system, operation=operation, outcome=outcome, status_code=status_code,
                             message=(message or "")[:2000], run_id=run_id, snapshot_id=snapshot_id,
                             at=at or utcnow()))

    def audit(self, s: Session | None = None, **fields) -> None:
        if s is not None:
            s.add(m.AuditLog(**fields))
            return
        with self.session() as s2:
            s2.add(m.AuditLog(**fields))

    def count(self, model, *where) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _copy_field(value, is_json: bool) -> str:
    """One value in PostgreSQL COPY text format (NULL is \\N; JSON columns keep SQLAlchemy's None -> 'null')."""
    if is_json:
        value = json_dumps(value)
    elif value is None:
        return "\\N"
    elif isinstance(value, bool):
        return "t" if value else "f"
    elif isinstance(value, datetime):
        value = value.isoformat()
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(s: Session, table, columns: list[str], rows: list[dict]) -> None:
    """COPY `rows` into `table` on the session's own connection, so inside its transaction (atomic with it)."""
    json_cols = {c for c in columns if isinstance(table.columns[c].type, JSON)}
    buf = io.StringIO()
    for r in rows:
        buf.write("\t".join(_copy_field(r[c], c in json_cols) for c in columns))
        buf.write("\n")
    buf.seek(0)
    cursor = s.connection().connection.cursor()
    try:
        names = ", ".join(f'"{c}"' for c in columns)
        cursor.copy_expert(f'COPY "{table.name}" ({names}) FROM STDIN', buf)
    finally:
        cursor.close()


_cache: dict[str, Ledger] = {}


def get_ledger(url: str | None = None, migrate: bool = True) -> Ledger:
    """A process-wide Ledger per URL, migrated on first use."""
    url = url or ledger_url()
    if url not in _cache:
        led = Ledger(url)
        if migrate:
            led.migrate()
        _cache[url] = led
    return _cache[url]
