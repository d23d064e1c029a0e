"""Remediation through real Airflow against the sandbox over HTTP:
- a cleared and re-run push task writes nothing new (`airflow dags test`, `tasks clear`, `tasks test`);
- approvals above the threshold wait as Human-in-the-loop tasks (AWAITING_INPUT) until answered through
  Airflow's REST API (a real `airflow api-server` on the same metadata DB); approve pushes, reject does not."""
from __future__ import annotations

import email
import json
import re
import subprocess
from datetime import timedelta
from email import policy
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
import yaml
from sqlalchemy import select
from tests.support.polling import free_port, wait_for  # noqa: E402
from tests.integration.test_remediation_sandbox import (SETTINGS, TIME_SCALE, channel_state, scenario, setup_ledger,  # noqa: E402
                                      shopify_finding, statuses, walmart_finding)
from tests.support.remediation import RUN  # noqa: E402

from omnirecon import airflow_setup  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.demo import _ledger_conn, _scaled  # noqa: E402
from omnirecon.hooks import hook_from_fields  # noqa: E402
from omnirecon.hooks import CONN_IDS as SYSTEM_CONN_IDS  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.remediation.plan import plan_corrections  # noqa: E402
from omnirecon_sandbox import Sandbox  # noqa: E402
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
    rerun = log.read_text().split("$ airflow tasks clear", 1)[1]
    written = {int(b): int(n) for b, n in re.findall(r"batch (\d+) on \w+: (\d+) written", rerun)}
    assert written == {b: 0 for b in batches}, rerun[-3000:]         # each re-run push found nothing to do

    assert applied_writes(sb) == first and sb.state() == state
    with ledger.session() as s:
        again = {c.id: (c.status, c.attempts) for c in s.scalars(select(m.Correction).where(m.Correction.run_id == run_id))}
    assert again == {c.id: (c.status, c.attempts) for c in corrections}


# -- approvals: HITL requests answered through Airflow's REST API ---------------------------------------------------
def test_approvals_wait_then_approve_and_reject_through_the_rest_api(tmp_path, smtp):
    """Approvers are told by e-mail (a real local SMTP server), with the link the HITL operator generates."""
    airflow_setup.init(quiet=True)
    sb = Sandbox(scenario(), time_scale=TIME_SCALE).start()
    procs = []
    try:
        ledger, settings = setup_ledger(tmp_path, [shopify_finding("SKU-B", 80), walmart_finding("SKU-B", 90)])
        assert plan_corrections(ledger, settings, run_id=RUN, mode="apply").counts == {"pending_approval": 2}
        settings_file = tmp_path / "retailer.yaml"
        settings_file.write_text(yaml.safe_dump(SETTINGS))
        runtime_file = tmp_path / "runtime.yaml"
        runtime_file.write_text(yaml.safe_dump({"approval_recipients": ["approver@example.test"]}))
        port = free_port()
        env = airflow_setup.airflow_env({
            **airflow_setup.connection_env(_scaled(sb.connections(), TIME_SCALE)),
            **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(ledger.url)}),
            "OMNIRECON_SETTINGS": str(settings_file), "OMNIRECON_MODE": "apply", "OMNIRECON_TASK_RETRIES": "0",
            "OMNIRECON_RUNTIME": str(runtime_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        })
        log = tmp_path / "airflow.log"
        with open(log, "a") as out:
            api = subprocess.Popen([airflow_setup.airflow_bin(), "api-server", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
            procs.append(api)
            logical = (utcnow() - timedelta(seconds=1)).replace(microsecond=0).isoformat()
            test = subprocess.Popen([airflow_setup.airflow_bin(), "dags", "test", "omnirecon_approvals", logical],
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append(test)
        base = f"http://127.0.0.1:{port}/api/v2"

        def pending():
            try:
                r = requests.get(f"{base}/dags/omnirecon_approvals/dagRuns/~/hitlDetails",
                                 params={"response_received": "false"}, timeout=10)
            except requests.ConnectionError:
                return None
            r.raise_for_status()
            mine = [d for d in r.json()["hitl_details"] if d["task_instance"]["logical_date"].startswith(logical[:19])]
            return mine if len(mine) == 2 else None
        waiting = wait_for(pending, 300, "two approval requests awaiting input", proc=test)
        with ledger.session() as s:      # they wait: nothing was pushed
            assert {c.status for c in s.scalars(select(m.Correction))} == {"pending_approval"}
        assert not [w for w in sb.writes() if w["applied"]]
        mails = wait_for(lambda: smtp.messages if len(smtp.messages) == 2 else None, 60, "two approval e-mails")
        links = set()
        for _, to, raw in mails:
            assert to == ["approver@example.test"]
            msg = email.message_from_bytes(raw, policy=policy.default)
            assert msg["To"] == "approver@example.test" and msg["Subject"].startswith("[omnirecon] approval needed")
            links |= set(re.findall(r"http://\S+/required_actions\S*", msg.get_body(("plain",)).get_content()))
        expected = {f"http://127.0.0.1:{port}/dags/omnirecon_approvals/runs/{d['task_instance']['dag_run_id']}"
                    f"/tasks/{d['task_instance']['task_id']}/required_actions?map_index={d['task_instance']['map_index']}"
                    for d in waiting}
        assert {unquote(link) for link in links} == expected
        assert all(requests.get(link, timeout=10).status_code == 200 for link in links)   # the UI serves it
        for d in waiting:
            ti = d["task_instance"]
            choice = "Approve" if "shopify" in d["subject"] else "Reject"
            r = requests.patch(f"{base}/dags/omnirecon_approvals/dagRuns/{ti['dag_run_id']}/taskInstances/"
                               f"{ti['task_id']}/{ti['map_index']}/hitlDetails",
                               json={"chosen_options": [choice]}, timeout=10)
            assert r.status_code == 200, r.text
        assert test.wait(300) == 0, log.read_text()[-4000:]
        st = statuses(ledger)
        assert st[("shopify", "SKU-B")][0] == "verified" and st[("walmart", "SKU-B")][0] == "rejected"
        shop, _, walmart = channel_state(sb)
        assert shop["SKU-B"] == 80 and walmart["SKU-B"] == 6
        assert [w["system"] for w in sb.writes() if w["applied"]] == ["shopify"]
        with ledger.session() as s:      # decisions recorded with who answered (not a timeout default)
            decided = {(a.decision, a.decided_by) for a in s.scalars(select(m.Approval))}
        assert {d for d, _ in decided} == {"approved", "rejected"} and "timeout" not in {b for _, b in decided}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        sb.stop()
