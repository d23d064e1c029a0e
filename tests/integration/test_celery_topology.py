"""The production topology, natively: Airflow's metadata DB on PostgreSQL, CeleryExecutor with the Redis broker,
and api-server, scheduler, dag-processor and a Celery worker as separate processes. The pipeline DAGs are
triggered through Airflow's REST API and run against the sandbox over HTTP; the ledger is on PostgreSQL."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select

from conftest import temp_pg_database
from omnirecon import airflow_setup, scenario
from omnirecon.demo import _ledger_conn, _scaled
from omnirecon.ledger import models as m
from omnirecon.sandbox import Sandbox

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
TIME_SCALE = 0.01
DEADLINE_S = 360          # both DAG runs, from the first trigger
PROCESSES = {"api-server": ["api-server"], "scheduler": ["scheduler", "--skip-serve-logs"],
             "dag-processor": ["dag-processor"], "worker": ["celery", "worker", "--concurrency", "4"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def airflow_db_url():
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards (the ledger has its own)."""
    with temp_pg_database("omnirecon_airflow") as url:
        yield url


@pytest.fixture
def broker_url(redis_url):
    """An empty Redis database among 10-14 for the Celery broker, flushed afterwards."""
    import redis
    base = redis_url.rsplit("/", 1)[0]
    for db in range(10, 15):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.dbsize() == 0:
            break
    else:
        pytest.fail("Redis databases 10-14 are all in use")
    yield f"{base}/{db}"
    client.flushdb()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def test_pipeline_on_celery_postgres_redis(tmp_path, monkeypatch, pg_ledger, airflow_db_url, broker_url,
                                          demo_scenario_path):
    home = tmp_path / "airflow"
    port = free_port()
    password = secrets.token_urlsafe(16)
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    # Airflow's own configuration goes into this process's environment, so airflow_setup.init() migrates the
    # PostgreSQL metadata DB and imports the pools, and airflow_env() hands it to every process.
    for key, value in {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db_url.replace("postgresql+psycopg2", "postgresql"),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        # no cron- or asset-scheduled runs: only the runs this test triggers
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OMNIRECON_LEDGER_URL", raising=False)     # the ledger comes from its Airflow connection
    airflow_setup.init(quiet=True)

    sc = scenario.load(str(demo_scenario_path))
    settings_file = tmp_path / "retailer.yaml"
    settings_file.write_text(yaml.safe_dump(sc.raw.get("settings", {}), sort_keys=False))
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in PROCESSES}
    sb = Sandbox(sc, time_scale=TIME_SCALE).start()
    try:
        env = airflow_setup.airflow_env({
            **airflow_setup.connection_env(_scaled(sb.connections(), TIME_SCALE)),
            **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(pg_ledger.url)}),
            "OMNIRECON_SETTINGS": str(settings_file),
            "OMNIRECON_MODE": "apply", "OMNIRECON_TASK_RETRIES": "0", "OMNIRECON_GX_DIR": str(tmp_path / "gx"),
        })
        for name, args in PROCESSES.items():
            with open(logs[name], "w") as out:
                procs[name] = subprocess.Popen([airflow_setup.airflow_bin(), *args], env=env, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        api = Api(f"http://127.0.0.1:{port}", procs, logs, home)
        api.wait(lambda: api.healthy(), 180, "api-server, scheduler and dag-processor healthy")
        api.wait(lambda: " ready." in tail(logs["worker"], 10**6), 120, "the Celery worker ready")
        api.login(password)

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
        worker_log = tail(logs["worker"], 10**7)
        for dag_id, run_id in (("omnirecon_snapshot", snapshot_run), ("omnirecon_reconcile", reconcile_run)):
            tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            assert tis and {ti["state"] for ti in tis} == {"success"}, [(ti["task_id"], ti["state"]) for ti in tis]
            for ti in tis:
                assert ti["hostname"] and ti["queue"] == "default", ti
                assert re.search(rf"Executing workload in Celery: .*task_id='{ti['task_id']}'.*run_id='{run_id}'",
                                 worker_log), f"{ti['task_id']} not in the worker log"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        sb.stop()


class Api:
    """Airflow's public REST API, with the process logs at hand for failure messages."""

    def __init__(self, base: str, procs: dict, logs: dict, home: Path):
        self.base, self.procs, self.logs, self.home = base, procs, logs, home
        self.session = requests.Session()
        self.deadline = None

    def diagnostics(self) -> str:
        parts = [f"--- {name} (exit {p.poll()}) ---\n{tail(self.logs[name])}" for name, p in self.procs.items()]
        for task_log in sorted((self.home / "logs").rglob("*.log"))[-6:]:
            parts.append(f"--- {task_log.relative_to(self.home)} ---\n{tail(task_log, 2000)}")
        return "\n".join(parts)

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, p in self.procs.items() if p.poll() is not None]
            if dead:
                pytest.fail(f"{', '.join(dead)} ended while waiting for {what}\n{self.diagnostics()}")
            got = predicate()
            if got:
                return got
            time.sleep(1)
        pytest.fail(f"timed out waiting for {what}\n{self.diagnostics()}")

    def healthy(self) -> bool:
        try:
            r = self.session.get(f"{self.base}/api/v2/monitor/health", timeout=5)
        except requests.ConnectionError:
            return False
        health = r.json() if r.ok else {}
        return all((health.get(part) or {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "dag_processor"))

    def login(self, password: str) -> None:
        r = self.session.post(f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=10)
        assert r.status_code in (200, 201), r.text
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def get(self, path: str) -> dict:
        r = self.session.get(self.base + path, timeout=10)
        r.raise_for_status()
        return r.json()

    def run_dag(self, dag_id: str, conf: dict) -> str:
        """Unpause, trigger with conf, wait for success (within the test's overall deadline); the run id."""
        self.deadline = self.deadline or time.monotonic() + DEADLINE_S

        def parsed():
            return self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=10).status_code == 200
        self.wait(parsed, 120, f"{dag_id} parsed")
        r = self.session.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10)
        assert r.status_code == 200, r.text
        run_id = f"celery_it__{uuid.uuid4().hex[:8]}"
        r = self.session.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns",
                              json={"dag_run_id": run_id, "logical_date": None, "conf": conf}, timeout=10)
        assert r.status_code == 200, r.text

        def finished():
            state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None
        state = self.wait(finished, max(self.deadline - time.monotonic(), 1), f"{dag_id} run {run_id}")
        if state != "success":
            tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            pytest.fail(f"{dag_id} {run_id}: {state}; {[(t['task_id'], t['state']) for t in tis]}\n{self.diagnostics()}")
        return run_id
