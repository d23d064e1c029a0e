"""The ledger: migrations on SQLite and PostgreSQL, atomic snapshots, counts that add up."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect, select

from omnirecon.ledger import Ledger
from omnirecon.ledger import models as m
from omnirecon.model.canonical import InventoryRecord, Quarantined
from omnirecon.timeutil import utcnow

TABLES = {"runs", "snapshots", "inventory_rows", "listing_rows", "order_rows", "quarantine", "api_events",
          "findings", "finding_states", "corrections", "approvals", "audit_log", "alerts", "reports"}


def _records(n):
    return [InventoryRecord(system="shopify", sku=f"SKU-{i}", location="gid://shopify/Location/1", available=i,
                            updated_at=utcnow(), ref={"inventory_item_id": f"gid://shopify/InventoryItem/{i}"})
            for i in range(n)]


def _exercise(led: Ledger):
    assert TABLES <= set(inspect(led.engine).get_table_names())
    led.begin_run("r1", "snapshot")
    snap = led.land_snapshot(run_id="r1", system="shopify", kind="inventory", records=_records(10),
                             quarantined=[Quarantined(3, "SKU-X", "negative quantity -2", {"sku": "SKU-X"})],
                             stats={"fetched_at": utcnow(), "api_calls": 4}, max_quarantine_fraction=0.5)
    assert snap.status == "complete"
    assert (snap.rows_in, snap.rows_valid, snap.rows_quarantined) == (11, 10, 1)
    assert led.count(m.InventoryRow, m.InventoryRow.snapshot_id == snap.id) == 10
    assert led.count(m.QuarantinedRow, m.QuarantinedRow.snapshot_id == snap.id) == 1
    assert led.latest_snapshot("shopify", "inventory").id == snap.id

    bad = led.land_snapshot(run_id="r1", system="shopify", kind="inventory", records=_records(2),
                            quarantined=[Quarantined(i, f"K{i}", "unknown enum") for i in range(3)],
                            stats={}, max_quarantine_fraction=0.05)
    assert bad.status == "unusable" and "3 of 5 rows quarantined" in bad.error
    assert led.latest_snapshot("shopify", "inventory").id == snap.id      # unusable is never "latest complete"

    failed = led.fail_snapshot(run_id="r1", system="shopify", kind="orders", error="HTTP 503 on page 3", stats={"api_calls": 3})
    assert led.latest_snapshot("shopify", "orders") is None
    assert led.latest_attempt("shopify", "orders").id == failed.id


def test_sqlite_ledger(sqlite_ledger):
    _exercise(sqlite_ledger)


@pytest.mark.postgres
def test_postgres_ledger(pg_ledger):
    _exercise(pg_ledger)


def test_snapshot_is_atomic_when_a_row_fails(sqlite_ledger):
    """A failure while writing rows leaves no snapshot and no rows behind."""
    led = sqlite_ledger
    led.begin_run("r2", "snapshot")
    records = _records(3)
    records[2].available = object()   # not storable: the insert fails mid-way
    with pytest.raises(Exception):
        led.land_snapshot(run_id="r2", system="shopify", kind="inventory", records=records, quarantined=[], stats={})
    with led.session() as s:
        assert s.scalars(select(m.Snapshot)).all() == []
        assert s.scalars(select(m.InventoryRow)).all() == []


def test_migrate_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Ledger(url).migrate()
    Ledger(url).migrate()
    from alembic.runtime.migration import MigrationContext
    with Ledger(url).engine.connect() as c:
        assert MigrationContext.configure(c).get_current_revision() is not None


def test_parallel_first_use_migrates_once_and_begin_run_is_race_safe(tmp_path):
    """Parallel tasks of one DAG run on a fresh ledger: one migration, one run row."""
    import threading
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    errors = []

    def task():
        try:
            led = Ledger(url)
            led.migrate()
            led.begin_run("dag/run-1", "snapshot", dag_id="dag")
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=task) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Ledger(url).count(m.Run) == 1


def test_orders_gap_before_closes_short_gaps_only(sqlite_ledger):
    from datetime import timedelta

    from omnirecon.snapshot import orders_gap_before
    led, t = sqlite_ledger, utcnow()
    led.begin_run("r", "snapshot")
    led.land_snapshot(run_id="r", system="amazon", kind="orders", records=[], quarantined=[],
                      stats={"window_start": t - timedelta(minutes=15), "window_end": t - timedelta(minutes=2)})
    assert orders_gap_before(led, "amazon", t, timedelta(minutes=15)) == t - timedelta(minutes=2)
    assert orders_gap_before(led, "amazon", t + timedelta(hours=1), timedelta(minutes=15)) is None  # an outage
    assert orders_gap_before(led, "walmart", t, timedelta(minutes=15)) is None


def _nan_evidence():
    import numpy as np
    import pandas as pd
    return {"tracked": float("nan"), "qty": np.int64(7), "ratio": np.float64("nan"), "when": pd.NaT,
            "at": pd.Timestamp("2026-01-01T00:00:00Z"), "nested": [{"x": np.bool_(True)}]}


def _store_finding(led):
    led.begin_run("r-json", "reconcile")
    with led.session() as s:
        s.add(m.Finding(run_id="r-json", fingerprint="f" * 16, check="inventory_drift", severity="warning",
                        channel="shopify", sku="S", diagnosis="unknown", action="alert", detail="d",
                        evidence=_nan_evidence()))
    with led.session() as s:
        return s.scalars(select(m.Finding)).one().evidence


EXPECTED_EVIDENCE = {"tracked": None, "qty": 7, "ratio": None, "when": None, "at": "2026-01-01T00:00:00+00:00",
                     "nested": [{"x": True}]}


def test_json_evidence_from_pandas_is_stored_on_sqlite(sqlite_ledger):
    assert _store_finding(sqlite_ledger) == EXPECTED_EVIDENCE


def test_json_text_is_the_same_whether_a_value_needs_cleaning_or_not():
    """Plain evidence takes json.dumps as it is; anything else the _json_safe walk: the same text either way."""
    from omnirecon.ledger.db import _json_safe, json_dumps
    plain = {"sku": "S", "qty": 3, "ratio": 0.5, "ok": True, "none": None, 7: "int key", "rows": [1, [2, {"a": "b"}]]}
    for value in (plain, _nan_evidence(), {"deep": [_nan_evidence(), plain]}, [float("inf")], "x", 1.5):
        assert json_dumps(value) == json.dumps(_json_safe(value), allow_nan=False)


@pytest.mark.postgres
def test_json_evidence_from_pandas_is_stored_on_postgres(pg_ledger):
    """PostgreSQL rejects NaN in json: the ledger's serializer must turn it into null."""
    assert _store_finding(pg_ledger) == EXPECTED_EVIDENCE


def _upgrade_from_0001_with_rows(url: str):
    """A ledger at revision 0001 holding rows from before sharding, upgraded to head: buckets are backfilled."""
    from alembic import command
    from alembic.config import Config
    from pathlib import Path
    from sqlalchemy import create_engine, text

    import omnirecon.ledger.db as db
    from omnirecon.model.sharding import sku_bucket

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.attributes["connection_url"] = url
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO runs (id, kind, status, started_at) VALUES ('r0', 'snapshot', 'success', :t)"),
                     {"t": utcnow()})
        conn.execute(text("INSERT INTO snapshots (id, run_id, system, kind, status, rows_in, rows_valid, rows_quarantined,"
                          " api_calls, retries, started_at) VALUES (1, 'r0', 'erp', 'inventory', 'complete', 3, 3, 0, 0, 0, :t)"),
                     {"t": utcnow()})
        for sku in ["A-1", "B-2", "C-3"]:
            conn.execute(text("INSERT INTO inventory_rows (snapshot_id, system, sku, location) VALUES (1, 'erp', :s, 'WH')"),
                         {"s": sku})
    engine.dispose()
    led = Ledger(url)
    led.migrate()
    with led.session() as s:
        rows = s.execute(select(m.InventoryRow.sku, m.InventoryRow.sku_bucket)).all()
    assert sorted(rows) == sorted((sku, sku_bucket(sku)) for sku in ["A-1", "B-2", "C-3"])
    assert {ix["name"] for ix in inspect(led.engine).get_indexes("inventory_rows")} >= {"ix_inventory_rows_snapshot_bucket"}
    led.engine.dispose()


def test_sharding_migration_backfills_buckets_on_sqlite(tmp_path):
    _upgrade_from_0001_with_rows(f"sqlite:///{tmp_path / 'old.db'}")


def test_sharding_migration_backfills_buckets_on_postgres(pg_url):
    _upgrade_from_0001_with_rows(pg_url)


def _upgrade_from_0005_with_open_states(url: str):
    """A ledger at revision 0005 holding open finding states, upgraded to head: each state with a SKU gets its
    SKU's bucket (a shard's persist selects by it), a state of no SKU none; the index the selection uses exists."""
    from alembic import command
    from alembic.config import Config
    from pathlib import Path
    from sqlalchemy import create_engine, text

    import omnirecon.ledger.db as db
    from omnirecon.model.sharding import sku_bucket

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.attributes["connection_url"] = url
    engine = create_engine(url)
    states = {"fp-a": "A-1", "fp-b": "B-2", "fp-b2": "B-2", "fp-order": None}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        for fp, sku in states.items():
            conn.execute(text('INSERT INTO finding_states (fingerprint, "check", channel, sku, status, severity, '
                              "first_seen_at, first_seen_run, last_seen_at, last_seen_run, alerts_sent, "
                              "resolved_notice_sent) VALUES (:fp, :c, 'shopify', :s, 'open', 'warning', :t, 'r0', :t, "
                              "'r0', 0, :f)"),
                         {"fp": fp, "c": "order_missing" if sku is None else "inventory_drift", "s": sku,
                          "t": utcnow(), "f": False})
    engine.dispose()
    led = Ledger(url)
    led.migrate()
    with led.session() as s:
        rows = dict(s.execute(select(m.FindingState.fingerprint, m.FindingState.sku_bucket)).all())
        assert s.scalar(select(m.FindingState.status).where(m.FindingState.fingerprint == "fp-a")) == "open"
    assert rows == {fp: None if sku is None else sku_bucket(sku) for fp, sku in states.items()}
    assert "ix_finding_states_status_check_bucket" in {ix["name"] for ix in inspect(led.engine).get_indexes("finding_states")}
    led.engine.dispose()


def test_finding_state_bucket_migration_backfills_open_states_on_sqlite(tmp_path):
    _upgrade_from_0005_with_open_states(f"sqlite:///{tmp_path / 'old.db'}")


def test_finding_state_bucket_migration_backfills_open_states_on_postgres(pg_url):
    _upgrade_from_0005_with_open_states(pg_url)


@pytest.mark.parametrize("uri", ["mysql://u@db.example/omnirecon", "postgresq://u@db.example/omnirecon"])
def test_a_ledger_connection_of_an_unsupported_type_is_an_error_not_a_sqlite_file(monkeypatch, uri):
    from omnirecon.connections import ConnectionProblem
    from omnirecon.ledger.db import ledger_url
    monkeypatch.delenv("OMNIRECON_LEDGER_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_OMNIRECON_LEDGER", uri)
    with pytest.raises(ConnectionProblem, match="omnirecon_ledger.*unsupported conn_type"):
        ledger_url()


def test_no_ledger_connection_means_the_documented_default_and_a_failing_backend_is_loud(monkeypatch, tmp_path):
    from airflow.sdk import BaseHook

    from omnirecon.connections import ConnectionProblem
    from omnirecon.ledger.db import default_sqlite_url, ledger_url
    monkeypatch.delenv("OMNIRECON_LEDGER_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_OMNIRECON_LEDGER", raising=False)
    monkeypatch.setenv("OMNIRECON_HOME", str(tmp_path))
    assert ledger_url() == default_sqlite_url()

    def unreachable(conn_id):
        raise OSError("secrets backend unreachable")
    monkeypatch.setattr(BaseHook, "get_connection", staticmethod(unreachable))
    with pytest.raises(ConnectionProblem, match="omnirecon_ledger cannot be read: OSError"):
        ledger_url()


@pytest.mark.parametrize("which", ["sqlite_ledger", "pg_ledger"])
def test_the_migrations_build_exactly_the_models_schema(which, request):
    """Every table, column and index of models.py is made by a migration, and nothing else (autogenerate finds no
    difference): a model change without its migration, or the reverse, fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    led = request.getfixturevalue(which)
    with led.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.Base.metadata) == []
    assert "ix_runs_kind_status_finished" in {i["name"] for i in inspect(led.engine).get_indexes("runs")}
