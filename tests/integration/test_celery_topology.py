"""The production topology, natively: Airflow's metadata DB on PostgreSQL, CeleryExecutor with the Redis broker,
and api-server, scheduler, dag-processor and a Celery worker as separate processes. The pipeline DAGs are
triggered through Airflow's REST API and run against the sandbox over HTTP; the ledger is on PostgreSQL.
(The harness is celery_support.py; test_celery_faults.py crashes the worker and restarts PostgreSQL on it.)"""
from __future__ import annotations

import re

import psutil
import pytest
from sqlalchemy import select

from tests.support.celery_topology import CeleryTopology, redis_broker, tail
from tests.support.services import temp_pg_database
from omnirecon_contract import scenario
from omnirecon.ledger import models as m

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def airflow_db_url():
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards (the ledger has its own)."""
    with temp_pg_database("omnirecon_airflow") as url:
        yield url


@pytest.fixture
def broker_url(redis_url):
    with redis_broker(redis_url) as url:
        yield url


def test_pipeline_on_celery_postgres_redis(tmp_path, monkeypatch, pg_ledger, airflow_db_url, broker_url,
                                          demo_scenario_path):
    with CeleryTopology(tmp_path, monkeypatch, metadata_url=airflow_db_url, broker_url=broker_url,
                        ledger_url=pg_ledger.url, scenario_obj=scenario.load(str(demo_scenario_path))) as af:
        api, sb = af.api, af.sb
        # the worker imported the reconcile path (Celery `imports`, airflow_setup.CELERY_EXTRA) before forking its
        # pool, so every task process starts with it: pandas' extension modules are mapped in the pool processes
        worker = psutil.Process(af.procs["worker"].pid)
        pool = [p for p in worker.children() if "ForkPoolWorker" in " ".join(p.cmdline())]
        assert len(pool) == 4 and all(any("/pandas/_libs/" in m.path for m in p.memory_maps()) for p in pool), pool
        snapshot_run = api.run_dag("omnirecon_snapshot", {"lookback_hours": 360})
        reconcile_run = api.run_dag("omnirecon_reconcile", {"mode": "apply"})

        with pg_ledger.session() as s:
            snaps = s.execute(select(m.Snapshot.system, m.Snapshot.kind, m.Snapshot.status)
                              .where(m.Snapshot.run_id == f"omnirecon_snapshot/{snapshot_run}")).all()
            findings = s.scalars(select(m.Finding).where(m.Finding.run_id == f"omnirecon_reconcile/{reconcile_run}")).all()
            corrections = {(c.channel, c.sku): c for c in s.scalars(
                select(m.Correction).where(m.Correction.run_id == f"omnirecon_reconcile/{reconcile_run}"))}
        complete = {(system, kind) for system, kind, status in snaps if status == "complete"}
        assert complete == {(system, kind) for system in ("erp", "shopify", "amazon", "walmart")
                            for kind in ("inventory", "listings", "orders")}, snaps
        assert any(f.check == "inventory_drift" and f.channel == "amazon" and f.sku == "TEE-BLK-M" for f in findings)
        amazon = corrections[("amazon", "TEE-BLK-M")]
        assert (amazon.status, amazon.to_qty, amazon.channel_sku) == ("verified", 3, "TEE-BLK-M-FBM")
        assert corrections[("walmart", "BOOK-XL")].status == "pending_approval"
        listing = next(li for li in sb.state()["amazon"]["listings"] if li["sku"] == "TEE-BLK-M-FBM")
        assert listing["quantity"] == 3

        # Every task instance of both runs went through Celery and ran on the worker.
        worker_log = tail(af.logs["worker"], 10**7)
        for dag_id, run_id in (("omnirecon_snapshot", snapshot_run), ("omnirecon_reconcile", reconcile_run)):
            tis = api.task_instances(dag_id, run_id)
            assert tis and {ti["state"] for ti in tis} == {"success"}, [(ti["task_id"], ti["state"]) for ti in tis]
            for ti in tis:
                assert ti["hostname"] and ti["queue"] == af.queue, ti
                assert re.search(rf"Executing workload in Celery: .*task_id='{ti['task_id']}'.*run_id='{run_id}'",
                                 worker_log), f"{ti['task_id']} not in the worker log"
