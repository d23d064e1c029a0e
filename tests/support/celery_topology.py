"""The production topology, natively, as a test harness: Airflow's metadata DB on PostgreSQL, CeleryExecutor on a
Redis broker, api-server, scheduler, dag-processor and a Celery worker as separate processes (each in its own
session, like containers), the sandbox in this process, the ledger on PostgreSQL, DAGs driven through the REST API.

A supervisor runs inside every wait loop: a process that ended fails the test, or, with `restart_dead` (what
docker-compose's `restart: always` does), is started again and recorded in `restarts`. `kill_worker()` SIGKILLs
the Celery worker with its whole process tree; `PrivatePostgres` is a throw-away cluster a test may restart.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.polling import free_port
from tests.support.services import IN_CI
from omnirecon import airflow_setup
from omnirecon.demo import _ledger_conn, _scaled
from omnirecon_sandbox import Sandbox

TIME_SCALE = 0.01
DEADLINE_S = 360          # all DAG runs of one topology, from the first trigger
PROCESSES = {"api-server": ["api-server"], "scheduler": ["scheduler", "--skip-serve-logs"],
             "dag-processor": ["dag-processor"], "worker": ["celery", "worker", "--concurrency", "4"]}
WORKER_READY = " ready."  # Celery's banner line once the worker consumes


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


BROKER_CLAIM = "omnirecon-test:broker-claim"


@contextlib.contextmanager
def redis_broker(redis_url: str):
    """A Redis database among 10-14 for the Celery broker that no one else uses, flushed afterwards. It is claimed
    atomically (a key set with NX, so concurrent sessions of this harness never share one) and only when it held
    nothing else (a database some other Celery deployment uses is never taken, nor flushed)."""
    import redis
    base = redis_url.rsplit("/", 1)[0]
    token = uuid.uuid4().hex
    for db in range(10, 15):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.set(BROKER_CLAIM, token, nx=True, ex=6 * 3600):
            if client.dbsize() == 1:
                break
            client.delete(BROKER_CLAIM)
    else:
        pytest.fail("Redis databases 10-14 are all in use")
    try:
        yield f"{base}/{db}"
    finally:
        if client.get(BROKER_CLAIM) == token.encode():
            client.flushdb()


# -- a private PostgreSQL cluster ---------------------------------------------------------------------------------
class PrivatePostgres:
    """A throw-away PostgreSQL cluster on its own port (never the machine's shared 5432 one), so a test may stop
    and restart it. Runs as the `postgres` user when this process is root (initdb refuses root)."""

    def __init__(self):
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not versions:
            msg = "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql"
            if IN_CI:
                pytest.fail(msg + " (mandatory in CI)")
            pytest.skip(msg)
        self.bin = versions[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="omnirecon-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.stops: list[float] = []       # monotonic times of each stop and each start
        self.starts: list[float] = []

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}\n{tail(self.log)}"

    def init(self) -> "PrivatePostgres":
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        self.starts.append(time.monotonic())

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.stops.append(time.monotonic())

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa
        admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres():
    pg = PrivatePostgres()
    try:
        yield pg.init()
    finally:
        pg.destroy()


# -- the topology -------------------------------------------------------------------------------------------------
@dataclass
class Restart:
    process: str
    exit_code: int
    at_s: float           # seconds after the processes were first started


class CeleryTopology:
    """Airflow on CeleryExecutor with its processes, the sandbox of one scenario and a REST client (`api`).

    `env`: extra environment for every Airflow process (Airflow settings, OMNIRECON_*); `local_settings`: the text
    of an `airflow_local_settings.py` (cluster policies) put into the Airflow home's config/ directory."""

    def __init__(self, tmp_path: Path, monkeypatch, *, metadata_url: str, broker_url: str, ledger_url: str,
                 scenario_obj, env: dict | None = None, local_settings: str | None = None,
                 restart_dead: bool = False, time_scale: float = TIME_SCALE):
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        self.metadata_url, self.broker_url, self.ledger_url = metadata_url, broker_url, ledger_url
        self.scenario, self.extra_env, self.local_settings = scenario_obj, dict(env or {}), local_settings
        self.restart_dead, self.time_scale = restart_dead, time_scale
        self.home = tmp_path / "airflow"
        self.queue = f"omnirecon-it-{uuid.uuid4().hex[:8]}"
        self.processes = dict(PROCESSES)         # name -> `airflow` arguments, read when the topology is made
        self.logs = {name: tmp_path / f"{name}.log" for name in self.processes}
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: list[Restart] = []
        self.sb: Sandbox | None = None
        self.api: Api | None = None
        self.started_at = None

    # lifecycle
    def __enter__(self) -> "CeleryTopology":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _configure(self) -> str:
        port = free_port()
        password = secrets.token_urlsafe(16)
        self.home.mkdir()
        (self.home / "passwords.json").write_text(json.dumps({"admin": password}))
        if self.local_settings:
            (self.home / "config").mkdir()
            (self.home / "config" / "airflow_local_settings.py").write_text(self.local_settings)
        # Airflow's own configuration goes into this process's environment, so airflow_setup.init() migrates the
        # PostgreSQL metadata DB and imports the pools, and airflow_env() hands it to every process.
        for key, value in {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url.replace("postgresql+psycopg2", "postgresql"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            # no cron- or asset-scheduled runs: only the runs the test triggers
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # tasks go to (and the workers consume) a queue of this topology's own, so a Celery worker of any
            # other deployment on the same broker never takes them
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            **{k: v for k, v in self.extra_env.items() if k.startswith("AIRFLOW__")},
        }.items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.delenv("OMNIRECON_LEDGER_URL", raising=False)   # the ledger comes from its connection
        self.password = password
        return f"http://127.0.0.1:{port}"

    def start(self) -> None:
        base = self._configure()
        airflow_setup.init(quiet=True)
        settings_file = self.tmp / "retailer.yaml"
        settings_file.write_text(yaml.safe_dump(self.scenario.raw.get("settings", {}), sort_keys=False))
        self.sb = Sandbox(self.scenario, time_scale=self.time_scale).start()
        self.env = airflow_setup.airflow_env({
            **airflow_setup.connection_env(_scaled(self.sb.connections(), self.time_scale)),
            **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(self.ledger_url)}),
            "OMNIRECON_SETTINGS": str(settings_file),
            "OMNIRECON_MODE": "apply", "OMNIRECON_TASK_RETRIES": "0", "OMNIRECON_GX_DIR": str(self.tmp / "gx"),
            **self.extra_env,
        })
        self.started_at = time.monotonic()
        for name in self.processes:
            self._spawn(name)
        self.api = Api(base, self)
        self.api.wait(self.api.healthy, 180, "api-server, scheduler and dag-processor healthy")
        self.wait_worker_ready()
        self.api.login(self.password)

    def stop(self) -> None:
        procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self.sb is not None:
            self.sb.stop()

    # processes
    def _spawn(self, name: str) -> None:
        with open(self.logs[name], "a") as out:
            if name in self.procs:
                out.write(f"\n=== restarted by the test's supervisor after exit {self.procs[name].returncode} ===\n")
                out.flush()
            self.procs[name] = subprocess.Popen([airflow_setup.airflow_bin(), *self.processes[name]], env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def supervise(self, what: str = "") -> None:
        """Restart (and record) processes that ended, or fail the test when restarts are off."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if not self.restart_dead:
                pytest.fail(f"{name} ended (exit {code}) while waiting for {what}\n{self.diagnostics()}")
            self.restarts.append(Restart(name, code, round(time.monotonic() - self.started_at, 1)))
            if len(self.restarts) > 20:
                pytest.fail(f"more than 20 restarts: {self.restarts}\n{self.diagnostics()}")
            self._spawn(name)

    def worker_ready_count(self) -> int:
        return tail(self.logs["worker"], 10**7).count(WORKER_READY)

    def wait_worker_ready(self, count: int = 1, timeout: float = 120) -> None:
        self.api.wait(lambda: self.worker_ready_count() >= count, timeout, "the Celery worker ready")

    def kill_worker(self) -> list[int]:
        """A real crash of the worker's container: SIGKILL the Celery worker and every process under it (its pool
        processes, the task supervisors, and the task processes Airflow puts into process groups of their own).
        The tree is frozen first so nothing forks in between. Returns the killed pids."""
        import psutil
        root = self.procs["worker"]
        try:
            tree = [psutil.Process(root.pid)]
        except psutil.NoSuchProcess:
            return []
        seen: dict[int, psutil.Process] = {}
        while tree:                                    # SIGSTOP top-down, collecting children as we go
            proc = tree.pop()
            if proc.pid in seen:
                continue
            seen[proc.pid] = proc
            try:
                proc.send_signal(signal.SIGSTOP)
                tree.extend(proc.children())
            except psutil.NoSuchProcess:
                pass
        for proc in seen.values():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return sorted(seen)

    def diagnostics(self) -> str:
        parts = [f"restarts: {self.restarts}"]
        parts += [f"--- {name} (exit {p.poll()}) ---\n{tail(self.logs[name])}" for name, p in self.procs.items()]
        for task_log in sorted((self.home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-6:]:
            parts.append(f"--- {task_log.relative_to(self.home)} ---\n{tail(task_log, 2000)}")
        return "\n".join(parts)


class Api:
    """Airflow's public REST API; every wait runs the topology's supervisor and rides out transient errors
    (connection refused, 5xx while the metadata DB is away)."""

    def __init__(self, base: str, topology: CeleryTopology):
        self.base, self.topology = base, topology
        self.session = requests.Session()
        self.deadline = None

    def wait(self, predicate, timeout: float, what: str, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            self.topology.supervise(what)
            try:
                got = predicate()
            except (requests.RequestException, ValueError) as e:
                got, last_error = None, e
            if got:
                return got
            time.sleep(interval)
        pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})\n{self.topology.diagnostics()}")

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

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def trigger(self, dag_id: str, conf: dict) -> str:
        """Wait until parsed, unpause, trigger with conf; the run id. Starts the overall deadline."""
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
        return run_id

    def wait_run(self, dag_id: str, run_id: str) -> None:
        """Wait for the run to end (within the overall deadline); fail the test unless it succeeded."""
        def finished():
            state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None
        state = self.wait(finished, max(self.deadline - time.monotonic(), 1), f"{dag_id} run {run_id}")
        if state != "success":
            tis = self.task_instances(dag_id, run_id)
            pytest.fail(f"{dag_id} {run_id}: {state}; {[(t['task_id'], t['map_index'], t['state'], t['try_number']) for t in tis]}"
                        f"\n{self.topology.diagnostics()}")

    def run_dag(self, dag_id: str, conf: dict) -> str:
        """Trigger and wait for success; the run id."""
        run_id = self.trigger(dag_id, conf)
        self.wait_run(dag_id, run_id)
        return run_id
