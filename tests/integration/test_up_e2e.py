"""`make up` from a fresh clone with nothing in the environment: the UI path runs the snapshot and reconcile DAGs
to success through Airflow's REST API, and SIGTERM to `omnirecon up` stops every process it started.

The "clone" is a temporary directory holding this checkout's files as symlinks (its .venv included), so `make up`
creates its Airflow home, ledger and data there and disturbs no other checkout."""
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from omnirecon import airflow_setup
from tests.support.polling import free_port
from tests.support.services import require_service

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CLONE_FILES = ("Makefile", "pyproject.toml", "requirements.lock", "requirements.in", "dags", "include", "plugins",
               "contract", "sandbox", "scripts", ".venv")


class Up:
    def __init__(self, clone: Path, port: int, proc: subprocess.Popen, log: Path):
        self.clone, self.port, self.proc, self.log = clone, port, proc, log
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait(self, what: str, ready, timeout: float) -> None:
        why = airflow_setup.wait_for_service(what, ready, self.proc, timeout)
        if why:
            raise AssertionError(f"`make up` {why}\n{self.logs()}")

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """One REST call; a 5xx (SQLite metadata busy on a loaded machine) is retried, as the UI's user would."""
        for _ in range(10):
            r = self.session.request(method, f"{self.base}/api/v2{path}", timeout=60, **kw)
            if r.status_code < 500:
                return r
            time.sleep(3)
        return r

    def login(self) -> None:
        pw_file = self.clone / ".airflow" / "simple_auth_manager_passwords.json.generated"
        self.wait("the generated admin password", pw_file.exists, 600)
        self.wait("the API server", lambda: requests.get(f"{self.base}/api/v2/monitor/health", timeout=5).ok, 600)
        password = json.loads(pw_file.read_text())["admin"]
        r = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def run_dag(self, dag_id: str, conf: dict, timeout: float = 1800) -> dict:
        self.wait(f"{dag_id} to be parsed", lambda: self.api("GET", f"/dags/{dag_id}").ok, 300)
        r = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        assert r.ok, r.text
        run_id = r.json()["dag_run_id"]
        r = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert r.ok, r.text
        run = {}

        def finished():
            r = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            run.update(r.json() if r.ok else {})
            return run.get("state") in ("success", "failed")
        self.wait(f"{dag_id} run {run_id}", finished, timeout)
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        run["tasks"] = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
        return run


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    # the venv is shared through the symlink: bring it up to date here, so `make` in the clone installs nothing
    subprocess.run(["make", "-C", str(ROOT), "install"], check=True, capture_output=True)
    clone = tmp_path_factory.mktemp("fresh-clone")
    for name in CLONE_FILES:
        (clone / name).symlink_to(ROOT / name)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(clone)),
           # only ports, so this Airflow never meets another one on this machine; no keys, no settings
           "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    log = clone / "make-up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "-C", str(clone), "up", f"PORT={port}"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    u = Up(clone, port, proc, log)
    try:
        u.login()
        yield u
    finally:
        if proc.poll() is None:   # a failed test: stop everything it started
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_up_runs_snapshot_and_reconcile(up):
    snap = up.run_dag("omnirecon_snapshot", {"lookback_hours": 24 * 15})
    assert snap["state"] == "success", f"{snap['tasks']}\n{up.logs()}"
    assert len(snap["tasks"]) >= 8 and set(snap["tasks"].values()) == {"success"}
    rec = up.run_dag("omnirecon_reconcile", {"mode": "apply"})
    assert rec["state"] == "success", f"{rec['tasks']}\n{up.logs()}"
    assert rec["tasks"][("reconcile", -1)] == "success"
    with sqlite3.connect(up.clone / "data" / "ledger.db") as db:
        checked = db.execute("SELECT count(*) FROM runs WHERE kind = 'reconcile' AND status = 'success'").fetchone()
    assert checked[0] >= 1


def test_connections_are_encrypted_and_testable(up):
    with sqlite3.connect(up.clone / ".airflow" / "airflow.db") as db:
        rows = db.execute("SELECT conn_id, is_encrypted, is_extra_encrypted FROM connection").fetchall()
    assert {r[0] for r in rows} >= {"omnirecon_ledger", "omnirecon_netsuite", "omnirecon_shopify"}
    assert all(r[1] or r[2] for r in rows), rows
    # the UI's Test button (disabled by Airflow's default): a PostgreSQL connection tests green
    require_service("PostgreSQL", "127.0.0.1", 5432, "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    r = up.api("POST", "/connections/test", json={"connection_id": "probe", "conn_type": "postgres", "host": "127.0.0.1",
                                                  "port": 5432, "login": "postgres", "schema": "postgres"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] is True, r.json()


def test_parallelism_is_sized_to_the_machine(up):
    cfg = (up.clone / ".airflow" / "airflow.cfg").read_text()
    slots = airflow_setup.parallelism()
    assert f"parallelism = {slots}" in cfg
    workers = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and "LocalExecutor" in " ".join(p.info["cmdline"])
               and _under(p, up.proc.pid)]
    assert 1 <= len(workers) <= slots


def test_local_executor_workers_start_with_the_reconcile_path(up):
    """The scheduler imported omnirecon.checks.preload before forking its workers (airflow_plugin.SchedulerPreload):
    pandas' extension modules are mapped in every worker, so the task processes they fork start with them."""
    workers = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and "LocalExecutor" in " ".join(p.info["cmdline"]) and _under(p, up.proc.pid)]
    assert workers and all(any("/pandas/_libs/" in m.path for m in p.memory_maps()) for p in workers), workers


def _under(p: psutil.Process, ancestor: int) -> bool:
    try:
        return any(a.pid == ancestor for a in p.parents())
    except psutil.NoSuchProcess:
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    """A process's command line; [] for one that already exited (a task process its executor worker has not reaped
    yet is a zombie: finished, nothing left to stop)."""
    try:
        return p.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def test_sigterm_stops_every_process(up):
    tree = [p for p in psutil.Process(up.proc.pid).children(recursive=True) if _running(p)]
    omnirecon = [p for p in tree if "up" in _cmdline(p) and any("omnirecon" in a for a in _cmdline(p)[:2])]
    assert len(omnirecon) == 1, [_cmdline(p) for p in tree]
    assert any("standalone" in _cmdline(p) for p in tree)
    omnirecon[0].send_signal(signal.SIGTERM)
    up.proc.wait(timeout=90)
    gone, alive = psutil.wait_procs(tree, timeout=30)
    alive = [p for p in alive if _running(p)]
    assert not alive, [_cmdline(p) for p in alive]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{up.base}/api/v2/monitor/health", timeout=5)
