"""Remediation through real Airflow (`airflow dags test`, `tasks clear`, `tasks test`) against the sandbox over HTTP:
a cleared and re-run push task writes nothing new to the channels."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_remediation_sandbox import SETTINGS, TIME_SCALE, scenario  # noqa: E402

from omnirecon import airflow_setup  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.demo import _ledger_conn, _scaled  # noqa: E402
from omnirecon.hooks import hook_from_fields  # noqa: E402
from omnirecon.hooks import CONN_IDS as SYSTEM_CONN_IDS  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.sandbox import Sandbox  # noqa: E402
from omnirecon.snapshot import snapshot_system  # noqa: E402
from omnirecon.timeutil import utcnow  # noqa: E402

pytestmark = pytest.mark.slow
DAG = "omnirecon_reconcile"


@pytest.fixture
def world(tmp_path):
    """A sandbox, a ledger holding fresh snapshots of it (taken over HTTP), and the env of Airflow's processes."""
    airflow_setup.init(quiet=True)
    sb = Sandbox(scenario(), time_scale=TIME_SCALE).start()
    ledger = Ledger("sqlite:///" + str(tmp_path / "ledger.db"))
    ledger.migrate()
    settings = settings_from_dict(SETTINGS, {"mode": "apply"})
    conns = sb.connections()
    ledger.begin_run("snap/airflow-it", "snapshot")
    for system, conn_id in SYSTEM_CONN_IDS.items():
        fields = dict(conns[conn_id], extra={**conns[conn_id]["extra"], "time_scale": TIME_SCALE})
        snapshot_system(system, ledger=ledger, run_id="snap/airflow-it", settings=settings,
                        hook=hook_from_fields(system, fields))
    settings_file = tmp_path / "retailer.yaml"
    settings_file.write_text(yaml.safe_dump(SETTINGS))
    env = airflow_setup.airflow_env({
        **airflow_setup.connection_env(_scaled(conns, TIME_SCALE)),
        **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(ledger.url)}),
        "OMNIRECON_SETTINGS": str(settings_file), "OMNIRECON_MODE": "apply", "OMNIRECON_TASK_RETRIES": "0",
        "OMNIRECON_GX_DIR": str(tmp_path / "gx"),
    })
    try:
        yield sb, ledger, env, tmp_path
    finally:
        sb.stop()


def airflow(env, log: Path, *args) -> subprocess.CompletedProcess:
    with open(log, "a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        return airflow_setup.run_airflow(list(args), env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600)


def applied_writes(sb) -> list[dict]:
    return [w for w in sb.writes() if w["applied"]]


def test_cleared_and_rerun_push_tasks_write_nothing_new(world):
    sb, ledger, env, tmp = world
    log = tmp / "airflow.log"
    logical = (utcnow() - timedelta(seconds=1)).replace(microsecond=0).isoformat()
    r = airflow(env, log, "dags", "test", DAG, logical, "-c", json.dumps({"mode": "apply"}))
    assert r.returncode == 0, log.read_text()[-4000:]

    with ledger.session() as s:
        run_id = s.scalar(select(m.Run.id).where(m.Run.kind == "reconcile"))
        corrections = list(s.scalars(select(m.Correction).where(m.Correction.run_id == run_id)))
        batches = sorted({c.batch for c in corrections if c.batch is not None})
    airflow_run_id = run_id.split("/", 1)[1]
    assert {c.channel for c in corrections} == {"shopify", "amazon", "walmart"}
    assert {c.status for c in corrections} == {"verified"}, [(c.channel, c.sku, c.status, c.detail)
                                                            for c in corrections]
    first = applied_writes(sb)
    assert first and len(batches) >= 3
    state = sb.state()

    # clear the mapped push task instances of that run, then run each again with its own mapped input
    r = airflow(env, log, "tasks", "clear", DAG, "-t", "^push$", "-s", logical, "-e", logical, "-y")
    assert r.returncode == 0, log.read_text()[-4000:]
    for index in range(len(batches)):
        r = airflow(env, log, "tasks", "test", DAG, "push", airflow_run_id, "--map-index", str(index))
        assert r.returncode == 0, log.read_text()[-4000:]
    text = log.read_text()
    assert text.count("0 written") >= len(batches), text[-4000:]     # each re-run push found nothing to do

    assert applied_writes(sb) == first and sb.state() == state
    with ledger.session() as s:
        again = {c.id: (c.status, c.attempts) for c in s.scalars(select(m.Correction).where(m.Correction.run_id == run_id))}
    assert again == {c.id: (c.status, c.attempts) for c in corrections}
