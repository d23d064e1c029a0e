"""DAG integrity (in the style of the Astro project template): every DAG imports cleanly, offline,
and carries an owner, tags, doc_md, retries and a time-based schedule."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    real_connect = socket.socket.connect

    def no_network(self, address):
        raise AssertionError(f"DAG files must not touch the network at import time (tried {address})")

    socket.socket.connect = no_network
    try:
        return DagBag(dag_folder=str(DAGS_DIR))
    finally:
        socket.socket.connect = real_connect


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_every_dag_file_defines_a_dag(dagbag):
    files = {p.resolve() for p in DAGS_DIR.glob("*.py")}
    loaded = {Path(d.fileloc).resolve() for d in dagbag.dags.values()}
    assert files == loaded


def test_expected_dags_present(dagbag):
    assert {"omnirecon_snapshot", "omnirecon_reconcile", "omnirecon_daily_report"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("attr", ["owner", "tags", "doc_md"])
def test_dag_metadata(dagbag, attr):
    for dag_id, dag in dagbag.dags.items():
        value = dag.owner if attr == "owner" else getattr(dag, attr)
        assert value and value != "airflow", f"{dag_id} lacks {attr}"
        if attr == "tags":
            assert "omnirecon" in dag.tags


def test_time_based_schedule(dagbag):
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    for dag_id, dag in dagbag.dags.items():
        tt = dag.timetable
        assert isinstance(tt, (CronTriggerTimetable, AssetOrTimeSchedule)), f"{dag_id}: {type(tt).__name__} is not time-based"
        assert tt.periodic, f"{dag_id} has no periodic schedule"


def test_tasks_have_retries_and_timeouts(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for t in dag.tasks:
            if t.task_type in ("ApprovalOperator", "HITLOperator"):
                continue
            assert t.execution_timeout is not None, f"{dag_id}.{t.task_id} has no execution_timeout"
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_snapshot_tasks_use_api_pools(dagbag):
    dag = dagbag.get_dag("omnirecon_snapshot")
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert pools["erp_inventory"] == "omnirecon_netsuite"
    assert all(p.startswith("omnirecon_") for p in pools.values())


@pytest.mark.parametrize("dag_id, name", [("omnirecon_reconcile", "channels"), ("omnirecon_reconcile", "sku_filter"),
                                          ("omnirecon_daily_report", "out_dir"),
                                          ("omnirecon_daily_report", "report_date")])
def test_optional_trigger_form_fields_are_not_required(dagbag, dag_id, name):
    """The trigger form marks a field required unless its type allows null; "empty: all" must be optional."""
    from airflow.sdk.definitions.param import Param
    param = dagbag.get_dag(dag_id).params.get_param(name)
    types = param.schema["type"] if isinstance(param.schema["type"], list) else [param.schema["type"]]
    assert "null" in types, param.schema
    Param(None, **param.schema).resolve()   # left empty in the form: valid


def test_reconcile_channels_param_accepts_empty_and_known_channels_only(dagbag):
    from airflow.sdk.definitions.param import Param
    from airflow.sdk.exceptions import ParamValidationError
    schema = dagbag.get_dag("omnirecon_reconcile").params.get_param("channels").schema
    for ok in (None, [], ["shopify", "walmart"]):
        assert Param(ok, **schema).resolve() == ok
    with pytest.raises(ParamValidationError):
        Param(["ebay"], **schema).resolve()
