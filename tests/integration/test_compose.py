"""docker-compose.yaml: valid for Compose (Debian's docker-compose; no engine needed for `config`) and shaped
like Airflow 3's official file: PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerer, Celery
workers, an init service, the sandbox and a mail catcher; project folders mounted; health checks; secrets
only from the environment."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"}


KEYS = {"AIRFLOW_FERNET_KEY": "x" * 43 + "=", "AIRFLOW_JWT_SECRET": "jwt", "AIRFLOW_API_SECRET_KEY": "api"}


def _config(env_file: dict | None, profile: str = "trial"):
    exe = shutil.which("docker-compose")
    if exe is None:
        msg = "docker-compose is not installed: apt-get install docker-compose (scripts/system-packages.sh does it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    return subprocess.run([exe, "-f", str(COMPOSE), "--profile", profile, "config"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**env, **(env_file or {})})


@pytest.fixture(scope="module")
def rendered():
    r = _config(KEYS)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def test_refuses_to_start_without_keys():
    """Without a Fernet key connections would be stored in clear; without one JWT secret no task could run."""
    for missing in KEYS:
        r = _config({k: v for k, v in KEYS.items() if k != missing})
        assert r.returncode != 0 and f"set {missing} in .env" in r.stderr, r.stderr


def test_every_container_shares_the_keys(rendered):
    for name in AIRFLOW_SERVICES:
        env = rendered["services"][name]["environment"]
        assert env["AIRFLOW__CORE__FERNET_KEY"] == KEYS["AIRFLOW_FERNET_KEY"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == KEYS["AIRFLOW_JWT_SECRET"], name
        assert env["AIRFLOW__API__SECRET_KEY"] == KEYS["AIRFLOW_API_SECRET_KEY"], name


def test_services(rendered):
    services = set(rendered["services"])
    assert AIRFLOW_SERVICES | {"postgres", "redis", "sandbox", "mailcatcher"} <= services


def test_celery_on_postgres_and_redis(rendered):
    env = rendered["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW_CONN_OMNIRECON_LEDGER"].startswith("postgres://")


def test_health_checks_and_mounts(rendered):
    for name in AIRFLOW_SERVICES - {"airflow-init"} | {"postgres", "redis"}:
        assert "healthcheck" in rendered["services"][name], name
    mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1]
              for v in rendered["services"]["airflow-scheduler"]["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include", "/opt/airflow/data"} <= mounts


def test_lost_tasks_recover_within_minutes(rendered):
    """Airflow's defaults leave a crashed worker's tasks for 5-10 minutes (see test_celery_faults.py)."""
    env = rendered["services"]["airflow-worker"]["environment"]
    assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) <= 120
    assert int(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) <= 300
    assert int(env["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"]) <= 120
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert rendered["services"][name].get("restart") == "always", name


def test_no_channel_secret_in_the_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    env = raw["x-airflow-common"]["environment"]
    for key in ("AIRFLOW_CONN_OMNIRECON_SHOPIFY", "AIRFLOW_CONN_OMNIRECON_AMAZON", "AIRFLOW_CONN_OMNIRECON_WALMART",
                "AIRFLOW_CONN_OMNIRECON_NETSUITE"):
        assert env[key].startswith("${"), f"{key} must come from the environment"


def test_celery_workers_preload_the_reconcile_path(rendered):
    """The same Celery `imports` as `omnirecon airflow-init` writes (bench/README.md, fixed cost per task)."""
    import json

    from omnirecon import airflow_setup
    env = rendered["services"]["airflow-worker"]["environment"]
    assert json.loads(env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"]) == airflow_setup.CELERY_EXTRA


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key twice in one mapping (PyYAML, and so Compose v1, keeps the last one silently)."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":     # `<<: *anchor`: merged, not a key of its own
            continue
        key = loader.construct_object(key_node, deep=deep)
        assert key not in seen, f"{COMPOSE.name} line {key_node.start_mark.line + 1}: {key!r} given twice"
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def test_no_key_is_given_twice():
    yaml.load(COMPOSE.read_text(), Loader=_UniqueKeyLoader)


def test_each_service_runs_its_own_command(rendered):
    services = rendered["services"]
    assert services["airflow-apiserver"]["command"] in ("api-server", ["api-server"])
    assert services["receiver"]["command"] == ["python", "-m", "omnirecon.cli", "receiver", "--host", "0.0.0.0",
                                               "--port", "8099"]
    assert "healthcheck" in services["receiver"]
    assert services["receiver"]["environment"]["OMNIRECON_RECEIVER_URL"] == ""
    amazon = _config({**KEYS, "OMNIRECON_SQS_QUEUE_URL": "http://sqs.local/q"}, profile="amazon")
    assert amazon.returncode == 0, amazon.stderr
    consumer = yaml.safe_load(amazon.stdout)["services"]["sqs-consumer"]
    assert consumer["command"][2:] == ["omnirecon.cli", "sqs-consumer", "--queue-url", "http://sqs.local/q"]
