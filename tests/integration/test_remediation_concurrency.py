"""The outbox under concurrency: PostgreSQL row locks (127.0.0.1:5432) and SQLite BEGIN IMMEDIATE claims
make two pushers of one batch write once."""
import threading
import uuid

import psycopg2
import pytest
from sqlalchemy import select
from tests.support.clock import FakeClock  # noqa: E402
from tests.support.remediation import RUN, FakeAmazon, add_finding, add_run, fresh_snapshots, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.remediation.plan import plan_corrections  # noqa: E402
from omnirecon.remediation.push import push_batch  # noqa: E402



@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        led = Ledger("sqlite:///" + str(tmp_path / "l.db"))
        led.migrate()
        yield led
    else:
        yield request.getfixturevalue("pg_ledger")


@pytest.fixture
def pg_ledger():
    name = f"omnirecon_remed_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    ledger = Ledger(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    ledger.migrate()
    try:
        yield ledger
    finally:
        ledger.engine.dispose()
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


class SlowAmazon(FakeAmazon):
    """Blocks inside the write until released, so a second pusher races the first."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.entered, self.release = threading.Event(), threading.Event()

    def patch_quantity(self, sku, product_type, quantity):
        self.entered.set()
        self.release.wait(10)
        return super().patch_quantity(sku, product_type, quantity)


def test_concurrent_pushes_of_one_batch_write_once(ledger):
    pg_ledger = ledger
    add_run(pg_ledger)
    fresh_snapshots(pg_ledger, ["SKU-1", "SKU-2"])
    add_finding(pg_ledger, channel="amazon", sku="SKU-1", from_qty=8, to_qty=5)
    settings = make_settings()
    plan = plan_corrections(pg_ledger, settings, run_id=RUN, mode="apply")
    assert plan_corrections(pg_ledger, settings, run_id=RUN, mode="apply").created == 0
    amazon = SlowAmazon({"SKU-1": 8})
    batch = plan.batches[0]
    first = threading.Thread(target=push_batch, args=(pg_ledger, settings, batch),
                             kwargs={"hook_factory": lambda c: amazon, "clock": FakeClock()})
    first.start()
    assert amazon.entered.wait(10)
    results = {}
    second = threading.Thread(target=lambda: results.update(push_batch(pg_ledger, settings, batch,
                                                                       hook_factory=lambda c: amazon,
                                                                       clock=FakeClock())))
    second.start()                  # waits on the row lock held by the first pusher
    amazon.release.set()
    first.join(10)
    second.join(10)
    assert amazon.writes == [("SKU-1", "SHIRT", 5)] and results["pushed"] == 0
    with pg_ledger.session() as s:
        c = s.scalars(select(m.Correction)).one()
        assert (c.status, c.attempts) == ("verified", 1)


def _write_elsewhere(ledger, correction_id: int) -> None:
    """Another ledger writer with half a second of patience: an audit row, and a touch of the row being pushed."""
    if ledger.dialect == "sqlite":
        import sqlite3
        con = sqlite3.connect(ledger.engine.url.database, timeout=0.5)
        try:
            con.execute("INSERT INTO audit_log (actor, system, operation, outcome, at) "
                        "VALUES ('other', 'erp', 'probe', 'ok', CURRENT_TIMESTAMP)")
            con.execute("UPDATE corrections SET fingerprint = fingerprint WHERE id = ?", (correction_id,))
            con.commit()
        finally:
            con.close()
        return
    url = ledger.engine.url
    con = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        cur = con.cursor()
        cur.execute("SET lock_timeout = '500ms'")
        cur.execute("UPDATE corrections SET fingerprint = fingerprint WHERE id = %s", (correction_id,))
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%%'")
        assert cur.fetchone()[0] == 0          # no transaction left open across the channel call
        con.commit()
    finally:
        con.close()


def test_the_ledger_stays_writable_while_a_push_call_is_in_flight(ledger):
    add_run(ledger)
    fresh_snapshots(ledger, ["SKU-1", "SKU-2"])
    add_finding(ledger, channel="amazon", sku="SKU-1", from_qty=8, to_qty=5)
    settings = make_settings()
    plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
    amazon = SlowAmazon({"SKU-1": 8})
    pusher = threading.Thread(target=push_batch, args=(ledger, settings, plan.batches[0]),
                              kwargs={"hook_factory": lambda c: amazon, "clock": FakeClock()})
    pusher.start()
    try:
        assert amazon.entered.wait(10)          # the channel holds its reply
        _write_elsewhere(ledger, plan.batches[0]["correction_ids"][0])
    finally:
        amazon.release.set()
        pusher.join(10)
    with ledger.session() as s:
        c = s.scalars(select(m.Correction)).one()
        assert (c.status, c.attempts) == ("verified", 1)
        assert s.scalar(select(m.AuditLog.id).where(m.AuditLog.operation == "probe")) or ledger.dialect != "sqlite"
