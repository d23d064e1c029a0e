"""The project's own Airflow home: airflow.cfg, metadata DB, pools and local connections."""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from omnirecon.config import project_home

# Pools sized from each API's limits (README "Operations"): concurrent tasks per system.
POOLS = {
    "omnirecon_netsuite": (4, "NetSuite account concurrency (default 5 per account; keep one for other integrations)"),
    "omnirecon_shopify": (2, "Shopify: one GraphQL cost bucket per app and shop; bulk operations run 5 at a time at most"),
    "omnirecon_amazon": (2, "SP-API per-operation token buckets (getOrders 1/min, reports 1/min)"),
    "omnirecon_walmart": (2, "Walmart per-seller token buckets"),
}


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or project_home() / ".airflow")


def airflow_env(extra: dict | None = None) -> dict:
    """Environment for every Airflow process this project starts."""
    home = airflow_home()
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "OMNIRECON_HOME": str(project_home()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_home() / "dags"),
        # The library is a package (pip install -e .); its Airflow plugin loads through the
        # `airflow.plugins` entry point, so Airflow need not scan plugins/ file by file.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": env.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "NO_PROXY": "*",  # macOS/proxy quirk: never proxy calls to the local sandbox
        # `airflow standalone` starts its components as `airflow ...`: this venv's bin must come first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    env.update(extra or {})
    return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


SECRETS_FILE = "omnirecon-secrets.json"


def home_secrets(home: Path) -> dict:
    """The Airflow home's own keys, generated once and kept (mode 0600): one JWT secret for every process (else
    the API server rejects each task's token), a Fernet key (connections stored encrypted), the API secret key."""
    path = home / SECRETS_FILE
    kept = json.loads(path.read_text()) if path.exists() else {}
    new = {"jwt_secret": lambda: secrets.token_urlsafe(32),
           "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode("ascii"),
           "api_secret_key": lambda: secrets.token_urlsafe(32)}
    missing = {k: make() for k, make in new.items() if not kept.get(k)}
    if missing:
        kept.update(missing)
        path.touch(mode=0o600)
        path.write_text(json.dumps(kept, indent=1))
        path.chmod(0o600)
    return kept


def parallelism(cpus: int | None = None) -> int:
    """Task slots (LocalExecutor starts one worker process each, ~150 MB): two per core, 4 to 32."""
    return max(4, min(32, 2 * (cpus or os.cpu_count() or 1)))


PRELOAD = "omnirecon.checks.preload"
CELERY_EXTRA = {"imports": [PRELOAD]}   # [celery] extra_celery_config


def write_cfg() -> Path:
    home = airflow_home()
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    keys = home_secrets(home)
    cfg = home / "airflow.cfg"
    cfg.touch(mode=0o600)
    cfg.chmod(0o600)
    cfg.write_text(f"""# Written by `omnirecon airflow-init`; environment variables (AIRFLOW__SECTION__KEY) override it.
# The keys below come from {SECRETS_FILE} (generated once for this home; never commit either file).
[core]
dags_folder = {project_home() / 'dags'}
plugins_folder = {home / 'plugins'}
executor = LocalExecutor
parallelism = {parallelism()}
load_examples = False
dags_are_paused_at_creation = True
max_active_runs_per_dag = 1
dagbag_import_timeout = 120
fernet_key = {keys['fernet_key']}
test_connection = Enabled

[database]
sql_alchemy_conn = sqlite:///{home}/airflow.db

[core_auth]
simple_auth_manager_users = admin:admin

[api]
base_url = http://localhost:8080
secret_key = {keys['api_secret_key']}
workers = 1

[api_auth]
jwt_secret = {keys['jwt_secret']}

[logging]
base_log_folder = {home}/logs

[scheduler]
enable_health_check = True
# The LocalExecutor forks its workers from the scheduler, which imported the reconcile path first (pandas, GX;
# airflow_plugin.SchedulerPreload): tasks forked from them skip those imports (bench/README.md, fixed cost).
# With `mp_start_method = forkserver` (AIRFLOW__SCHEDULER__MP_START_METHOD) the workers come from a forkserver
# that imports the same module instead.
mp_forkserver_preload = {PRELOAD}

[celery]
# A Celery worker imports its `imports` once, before it forks its pool processes (which fork the task processes):
# every task on the worker starts with the reconcile path loaded.
extra_celery_config = {json.dumps(CELERY_EXTRA)}
""")
    return cfg


def run_airflow(args: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([airflow_bin(), *args], env=env or airflow_env(), **kw)


def init(quiet: bool = False) -> None:
    """Idempotent: cfg, `airflow db migrate`, pools. Fast when already done."""
    home = airflow_home()
    write_cfg()
    stamp = home / ".initialised"
    out = subprocess.DEVNULL if quiet else None
    if not stamp.exists():
        print(f"==> initialising Airflow home {home} (SQLite metadata, LocalExecutor, no example DAGs)", flush=True)
        clean = clean_metadata_db(out)
        db = home / "airflow.db"
        if airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{db}" and not db.exists():
            shutil.copyfile(clean, db)   # the same migration, not run twice
        else:
            _migrate(airflow_env(), out)
        stamp.write_text("ok\n")
    clean_metadata_db(out)


CLEAN_DB = "airflow-clean.db"


def pools_file(home: Path) -> Path:
    pools = {name: {"slots": slots, "description": desc, "include_deferred": False} for name, (slots, desc) in POOLS.items()}
    pf = home / "pools.json"
    pf.write_text(json.dumps(pools, indent=1))
    return pf


def clean_metadata_db(out=subprocess.DEVNULL) -> Path:
    """A migrated Airflow metadata database with pools and no runs, made once per home: what a demo copies so that
    each demo starts from clean Airflow state (runs of earlier demos or of `make up` never leak into it)."""
    home = airflow_home()
    clean = home / CLEAN_DB
    if not clean.exists():
        tmp = home / f"{CLEAN_DB}.tmp"
        tmp.unlink(missing_ok=True)
        _migrate(airflow_env({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp}"}), out)
        tmp.replace(clean)
    return clean


def _migrate(env: dict, out) -> None:
    """`airflow db migrate` and the project's pools on the database `env` names."""
    r = run_airflow(["db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT if out is not None else None)
    if r.returncode != 0:
        raise SystemExit(f"airflow db migrate failed (exit {r.returncode})")
    r = run_airflow(["pools", "import", str(pools_file(airflow_home()))], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit("airflow pools import failed")


def connection_env(connections: dict) -> dict:
    """AIRFLOW_CONN_<ID> variables (JSON form) for connections given as dicts."""
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps(fields) for cid, fields in connections.items()}


def wait_for_service(what: str, ready, proc: subprocess.Popen, timeout_s: float, interval_s: float = 2.0) -> str | None:
    """Poll `ready()` until it holds (a connection error counts as not yet) -> None; or why it never did: the
    process it waits on exited, or the time ran out. The caller raises its own error with its own log."""
    import time

    import requests
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited ({proc.returncode}) waiting for {what}"
        try:
            if ready():
                return None
        except requests.RequestException:
            pass
        time.sleep(interval_s)
    return f"timed out waiting for {what}"
