"""Backfill after an ERP outage, through a real Airflow scheduler (issue 7).

The story: the ERP is `down` (sandbox fault) while `omnirecon_snapshot` runs for three 15-minute intervals
(`airflow dags test` per interval stands in for the scheduled runs: their ERP snapshots fail, the channels'
land). The fault is lifted over the sandbox's control endpoint, the first regular run after the outage is
triggered, and `airflow backfill create --reprocess-behavior failed` re-runs the missed intervals on a real
`airflow scheduler` (LocalExecutor, SQLite metadata, `airflow api-server` for the task API). Then a
reconcile checks the orders of the outage windows: each was pulled in exactly one complete order snapshot
per system and yields its finding exactly once; the backfill replayed no point-in-time inventory.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import select

from tests.support.polling import free_port
from omnirecon import airflow_setup
from omnirecon_contract import scenario
from omnirecon.checks.run import reconcile
from omnirecon.config import settings_from_dict
from omnirecon.demo import _ledger_conn, _scaled
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon_sandbox import Sandbox
from omnirecon.timeutil import iso, parse_ts

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[2] / "include" / "scenarios" / "demo.yaml"
DAG_ID = "omnirecon_snapshot"
SYSTEMS = ("erp", "shopify", "amazon", "walmart")
SCALE = 0.01
STEP = timedelta(minutes=15)


# --- the scenario: orders timestamped inside the outage windows (offsets from as_of = end of the outage) ---
def _so(id_, channel, order_id, status, created, modified, sku="JEANS-32", shipped=0, fulfillments=()):
    return {"id": id_, "tranid": f"SO{id_}", "channel": channel, "channel_order_id": order_id, "status": status,
            "created": created, "last_modified": modified,
            "lines": [{"sku": sku, "quantity": 1, "quantity_fulfilled": shipped}],
            "fulfillments": [{"id": 7000 + id_ % 1000, "shipped_at": t} for t in fulfillments]}


def _shopify(n, created, updated, status="UNFULFILLED", sku="JEANS-32"):
    return {"id": f"gid://shopify/Order/{n}", "name": f"#{n}", "created_at": created, "updated_at": updated,
            "cancelled_at": None, "display_fulfillment_status": status, "display_financial_status": "PAID",
            "line_items": [{"sku": sku, "quantity": 1}]}


def _amazon(order_id, created, updated, status="Unshipped", sku="JEANS-32"):
    return {"amazon_order_id": order_id, "purchase_date": created, "last_update_date": updated,
            "order_status": status, "fulfillment_channel": "MFN",
            "items": [{"sku": sku, "quantity_ordered": 1, "quantity_shipped": 1 if status == "Shipped" else 0}]}


def _walmart(po, created, updated, status="Acknowledged", sku="JEANS-32"):
    return {"purchase_order_id": po, "customer_order_id": "9" + po, "order_date": created, "last_modified": updated,
            "lines": [{"line_number": "1", "sku": sku, "quantity": 1, "status": status}]}


MISSING_IN_ERP = {("amazon", "111-0000101-0000001"), ("walmart", "1796200000302")}


def outage_doc(as_of: datetime) -> dict:
    """The demo retailer with its orders replaced by ones updated in the outage windows
    W1 = [-45m, -30m), W2 = [-30m, -15m), W3 = [-15m, 0) (some exactly on a window boundary), one before the outage,
    and the ERP down from the start. The order times are absolute (offsets from the outage's end) and the scenario's
    as_of is `now`: the sandbox's clock is real time, as the platforms' is, so Amazon's "LastUpdatedBefore at least
    2 minutes ago" means the same to the hook and to the sandbox (a fixed past as_of would start the sandbox's
    clock minutes behind the hook's)."""
    doc = _absolute(yaml.safe_load(DEMO.read_text()), as_of, _ORDER_TIMES)
    doc["as_of"] = "now"
    doc["erp"]["sales_orders"] = [
        _so(9100, "shopify", "gid://shopify/Order/100", "B", "-2h", "-75m"),        # before the outage
        _so(9101, "shopify", "gid://shopify/Order/101", "B", "-50m", "-40m"),       # W1
        _so(9201, "walmart", "1796200000201", "B", "-40m", "-30m"),                 # W2, on its start
        _so(9202, "shopify", "gid://shopify/Order/202", "B", "-25m", "-20m"),       # W2
        _so(9303, "shopify", "gid://shopify/Order/303", "B", "-50m", "-45m"),       # W1, on its start
        _so(9301, "amazon", "111-0000301-0000001", "F", "-60m", "-10m", shipped=1, fulfillments=["-12m"]),  # W3
    ]
    doc["shopify"]["orders"] = [_shopify(100, "-2h", "-75m"), _shopify(101, "-50m", "-40m"),
                                _shopify(202, "-25m", "-20m"), _shopify(303, "-50m", "-15m")]   # W3, on its start
    doc["amazon"]["orders"] = [_amazon("111-0000101-0000001", "-50m", "-35m"),                 # W1, not in ERP
                               _amazon("111-0000301-0000001", "-60m", "-15m", "Shipped")]    # W3, on its start
    doc["walmart"]["orders"] = [_walmart("1796200000201", "-40m", "-30m"),                     # W2, on its start
                                _walmart("1796200000302", "-45m", "-5m")]                       # W3, not in ERP
    doc["faults"] = [{"system": "erp", "operation": "*", "kind": "down"}]
    return _absolute(doc, as_of, _ORDER_TIMES)


_ORDER_TIMES = {"created", "last_modified", "shipped_at", "created_at", "updated_at", "purchase_date",
                "last_update_date", "order_date"}


def _absolute(node, as_of: datetime, keys):
    """Every relative time (`-50m`) under `keys` as an absolute UTC timestamp from `as_of`."""
    if isinstance(node, dict):
        return {k: (iso(parse_ts(v, as_of)) if k in keys and isinstance(v, str) and v[:1] in "+-" else
                    _absolute(v, as_of, keys)) for k, v in node.items()}
    if isinstance(node, list):
        return [iso(parse_ts(v, as_of)) if isinstance(v, str) and v[:1] in "+-" else _absolute(v, as_of, keys)
                for v in node]
    return node


def sandbox_orders(state: dict) -> dict:
    """system -> {order_id: updated_at} as the sandbox holds them (canonical ids: the ERP's are channel ids)."""
    return {
        "erp": {o["channel_order_id"]: parse_ts(o["last_modified"]) for o in state["erp"]["sales_orders"]},
        "shopify": {o["id"]: parse_ts(o["updated_at"]) for o in state["shopify"]["orders"]},
        "amazon": {o["amazon_order_id"]: parse_ts(o["last_update_date"]) for o in state["amazon"]["orders"]},
        "walmart": {o["purchase_order_id"]: parse_ts(o["last_modified"]) for o in state["walmart"]["orders"]},
    }


# --- Airflow processes ------------------------------------------------------------------------------------
class Airflow:
    """A private Airflow home (SQLite metadata, LocalExecutor) with the project's env, and its processes."""

    def __init__(self, home: Path, env: dict):
        self.home, self.env, self.procs = home, env, []

    def run(self, *args, timeout=300, check=True) -> subprocess.CompletedProcess:
        with open(self.home / "cli.log", "a") as log:
            log.write(f"\n$ airflow {' '.join(args)}\n")
            log.flush()
            r = subprocess.run([airflow_setup.airflow_bin(), *args], env=self.env, stdout=log,
                               stderr=subprocess.STDOUT, timeout=timeout)
        assert not check or r.returncode == 0, f"airflow {' '.join(args)} failed ({r.returncode}):\n{self.logs()}"
        return r

    def python(self, code: str, *args) -> None:
        with open(self.home / "cli.log", "a") as log:
            r = subprocess.run([sys.executable, "-c", code, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                               timeout=120)
        assert r.returncode == 0, self.logs()

    def start(self, *args) -> None:
        log = open(self.home / f"{args[0]}.log", "a")
        self.procs.append(subprocess.Popen([airflow_setup.airflow_bin(), *args], env=self.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self, command: str | None = None) -> None:
        """Stop the processes started with `command` (all if None); each is its own process group."""
        for p in [p for p in self.procs if command is None or p.args[1] == command]:
            self.procs.remove(p)
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def query(self, sql: str, *params) -> list:
        with sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(self.home.glob("*.log")))


# What the scheduler does at each tick (SchedulerJobRunner._create_dag_runs), for the past intervals whose runs
# end at --from..--to: the runs the outage made fail, with the identities the timetable gives them.
SCHEDULED_RUNS = """
import sys
from airflow.models.dag import DagModel
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType
dag_id, start, end = sys.argv[1], timezone.parse(sys.argv[2]), timezone.parse(sys.argv[3])
with create_session() as session:
    serdag = session.scalar(SerializedDagModel.latest_item_select_object(dag_id)).dag
    run = None
    for info in serdag.iter_dagrun_infos_between(start, end):
        run = serdag.create_dagrun(
            run_id=serdag.timetable.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=info.run_after,
                                                    data_interval=info.data_interval, partition_key=None),
            logical_date=info.logical_date, data_interval=info.data_interval, run_after=info.run_after,
            run_type=DagRunType.SCHEDULED, triggered_by=DagRunTriggeredByType.TIMETABLE,
            state=DagRunState.QUEUED, session=session)
    session.get(DagModel, dag_id).calculate_dagrun_date_fields(dag=serdag, reference_run=run)
"""


def _wait(what: str, ready, airflow: Airflow, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{airflow.logs()}")


def _api_up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).ok
    except requests.RequestException:
        return False


def _between_ticks() -> datetime:
    """Start when the last quarter-hour tick is >= 3 min old (SP-API serves no order updated in the last 2 min,
    so the last missed window must be that old to be pulled whole) and the next tick is >= 3 min away (the
    story takes ~2 min and must not see the scheduler start a new interval). Waits at most ~6 minutes."""
    while True:
        now = datetime.now(timezone.utc)
        since_tick = (now.minute % 15) * 60 + now.second
        if 180 <= since_tick <= 15 * 60 - 180:
            return now
        time.sleep((180 - since_tick) if since_tick < 180 else (15 * 60 - since_tick + 180))


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """Runs the whole story once; the tests below check what it left in the ledger and in Airflow."""
    tmp = tmp_path_factory.mktemp("backfill")
    now = _between_ticks()
    outage_end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)   # last cron tick
    missed = [outage_end - 2 * STEP, outage_end - STEP, outage_end]   # when the failed runs ran (interval ends)
    sc = scenario.from_dict(outage_doc(outage_end))
    settings_file = tmp / "retailer.yaml"
    settings_file.write_text(yaml.safe_dump(sc.raw["settings"], sort_keys=False))
    ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
    Ledger(ledger_url).migrate()   # deployed ledgers are migrated before the DAGs run
    home, port = tmp / "airflow", free_port()

    with pytest.MonkeyPatch.context() as mp, Sandbox(sc, time_scale=SCALE) as sb:
        mp.setenv("AIRFLOW_HOME", str(home))
        env = airflow_setup.airflow_env({
            **airflow_setup.connection_env(_scaled(sb.connections(), SCALE)),
            **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(ledger_url)}),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__PARALLELISM": "6",
            "OMNIRECON_SETTINGS": str(settings_file),
            "OMNIRECON_GX_DIR": str(tmp / "gx"),
            "OMNIRECON_TASK_RETRIES": "0",
        })
        env.pop("OMNIRECON_LEDGER_URL", None)
        airflow_setup.init(quiet=True)   # airflow.cfg, db migrate and pools in the private home
        af = Airflow(home, env)
        try:
            af.start("api-server", "--port", str(port))
            af.run("dags", "reserialize")
            # 1. the outage: the scheduler runs the three intervals while the ERP is down; ERP snapshots fail
            af.python(SCHEDULED_RUNS, DAG_ID, iso(missed[0]), iso(missed[-1]))
            af.run("dags", "unpause", DAG_ID)
            _wait("the API server", lambda: _api_up(port), af)
            af.start("scheduler")
            _wait("the runs of the outage", lambda: af.query(
                "SELECT count(*) FROM dag_run WHERE dag_id = ? AND run_type = 'scheduled' AND state = 'failed'",
                DAG_ID)[0][0] == len(missed), af)
            af.stop("scheduler")   # SQLite metadata: the CLI below must not compete with the scheduler for the write lock
            ledger = Ledger(ledger_url)
            with ledger.session() as s:
                before = s.scalars(select(m.Snapshot)).all()
            # 2. the ERP answers again
            lifted = requests.delete(sb.urls["erp"] + "/_sandbox/faults", params={"system": "erp", "kind": "down"},
                                     timeout=5)
            assert lifted.ok and lifted.json() == []
            # 3. the first regular run after the outage, and the backfill of the missed intervals
            af.run("dags", "trigger", DAG_ID, "--conf", json.dumps({"window_start": iso(outage_end)}))
            af.run("backfill", "create", "--dag-id", DAG_ID, "--from-date", iso(missed[0]), "--to-date", iso(missed[-1]),
                   "--reprocess-behavior", "failed")
            af.start("scheduler")
            _wait("the backfill and the triggered run", lambda: af.query(
                "SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0] == 0 and not af.query(
                "SELECT run_id FROM dag_run WHERE dag_id = ? AND state IN ('queued', 'running')", DAG_ID), af)
            runs = af.query("SELECT run_id, run_type, state, data_interval_end FROM dag_run WHERE dag_id = ?", DAG_ID)
            tis = af.query("SELECT dr.run_type, ti.task_id, ti.state, dr.run_id FROM task_instance ti JOIN dag_run dr"
                           " ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id WHERE ti.dag_id = ?", DAG_ID)
        finally:
            af.stop()
        orders = sandbox_orders(sb.state())
    ledger.begin_run("reconcile/after-backfill", "reconcile")
    result = reconcile(ledger, settings_from_dict(sc.settings), run_id="reconcile/after-backfill",
                       gx_dir=str(tmp / "gx"))
    yield {"ledger": ledger, "before": before, "missed": missed, "orders": orders, "runs": runs, "tis": tis,
           "result": result, "airflow": af}
    ledger.engine.dispose()


def _window(logical: datetime) -> tuple[datetime, datetime]:
    return logical - STEP, logical


def _snapshots(ledger, **where) -> list:
    with ledger.session() as s:
        q = select(m.Snapshot)
        for k, v in where.items():
            q = q.where(getattr(m.Snapshot, k) == v)
        return s.scalars(q.order_by(m.Snapshot.id)).all()


def _order_ids(ledger, snapshot_id: int) -> list[str]:
    with ledger.session() as s:
        return list(s.scalars(select(m.OrderRow.order_id).where(m.OrderRow.snapshot_id == snapshot_id)))


def _covers(snap, start, end) -> bool:
    return parse_ts(snap.window_start) < end and parse_ts(snap.window_end) > start


def test_the_outage_failed_the_erp_snapshots_of_every_missed_window(outage):
    failed = [s for s in outage["before"] if s.status == "failed"]
    assert {s.system for s in failed} == {"erp"} and all("erp" in (s.error or "") for s in failed)
    windows = {(parse_ts(s.window_start), parse_ts(s.window_end)) for s in failed if s.kind == "orders"}
    assert windows == {_window(t) for t in outage["missed"]}
    assert {s.kind for s in failed} == {"inventory", "listings", "orders"}
    # the channels answered: their orders of each window landed (Amazon's up to 2 minutes before the pull)
    landed = {(s.system, parse_ts(s.window_start)) for s in outage["before"] if s.kind == "orders" and s.status == "complete"}
    assert landed == {(c, _window(t)[0]) for c in ("shopify", "amazon", "walmart") for t in outage["missed"]}


def test_the_backfill_ran_the_missed_intervals_on_the_scheduler(outage):
    by_date = {parse_ts(r[3]): r for r in outage["runs"] if r[3]}
    for logical in outage["missed"]:
        run_id, run_type, state, _ = by_date[logical]
        assert (run_type, state) == ("backfill", "success"), outage["airflow"].logs()
    states = {(task, state) for run_type, task, state, _ in outage["tis"] if run_type == "backfill"}
    # point-in-time inventory is not replayed; channel orders landed during the outage are not pulled again
    assert states == {(f"{s}_inventory", "skipped") for s in SYSTEMS} | {("erp_orders", "success")} | {
        (f"{c}_orders", "skipped") for c in ("shopify", "amazon", "walmart")}
    assert len([t for t in outage["tis"] if t[0] == "backfill"]) == 8 * len(outage["missed"])


def test_each_window_orders_land_in_exactly_one_complete_snapshot_per_system(outage):
    ledger = outage["ledger"]
    for system in SYSTEMS:
        complete = _snapshots(ledger, system=system, kind="orders", status="complete")
        for logical in outage["missed"]:
            start, end = _window(logical)
            snaps = [s for s in complete if _covers(s, start, end)]
            # the snapshots of the window tile it: no gap, no overlap (one, or Amazon's remainder after it)
            edges = [(parse_ts(s.window_start), parse_ts(s.window_end)) for s in snaps]
            assert edges[0][0] == start and edges[-1][1] == end, (system, logical, edges)
            assert all(a[1] == b[0] for a, b in zip(edges, edges[1:])), (system, logical, edges)
            ids = [o for s in snaps for o in _order_ids(ledger, s.id)]
            want = {o for o, at in outage["orders"][system].items() if start <= at < end}
            assert sorted(ids) == sorted(want), (system, logical)
            if system != "amazon":
                assert len(snaps) == 1, (system, logical, edges)
        everything = [o for s in complete for o in _order_ids(ledger, s.id)]
        assert len(everything) == len(set(everything)), f"{system}: an order landed in two snapshots"
    # every outage order was found; the one updated before the outage was never pulled (exact windows)
    assert {o for s in _snapshots(ledger, kind="orders") for o in _order_ids(ledger, s.id)} == {
        o for orders in outage["orders"].values() for o, at in orders.items() if at >= _window(outage["missed"][0])[0]}


def test_inventory_comes_from_the_latest_snapshot_not_replayed(outage):
    ledger, before = outage["ledger"], outage["before"]
    missed_runs = {s.run_id for s in before}             # the backfill re-ran these runs (same run ids)
    new = [s for s in _snapshots(ledger) if s.id > max(b.id for b in before)]
    replayed = [(s.system, s.kind) for s in new if s.run_id in missed_runs]
    assert sorted(replayed) == [("erp", "orders")] * len(outage["missed"])   # no inventory, no listings
    # the regular run after the outage took point-in-time inventory; reconcile read that one
    fresh = [s for s in new if s.run_id.startswith(f"{DAG_ID}/manual__") and s.kind in ("inventory", "listings")]
    assert {(s.system, s.kind) for s in fresh} == {(sy, k) for sy in SYSTEMS for k in ("inventory", "listings")}
    assert {s.status for s in fresh} == {"complete"}
    for system in SYSTEMS:
        assert ledger.latest_attempt(system, "inventory").run_id not in missed_runs
    assert ledger.latest_attempt("erp", "inventory").status == "complete"
    assert "erp" not in outage["result"].unusable_systems


def test_the_outage_orders_are_checked_once(outage):
    ledger = outage["ledger"]
    with ledger.session() as s:
        findings = s.execute(select(m.Finding.check, m.Finding.channel, m.Finding.order_id)
                             .where(m.Finding.run_id == "reconcile/after-backfill", m.Finding.order_id != "")).all()
    assert len(findings) == len(set(findings)), findings
    missing = {(channel, order) for check, channel, order in findings if check == "order_missing"}
    assert missing == MISSING_IN_ERP
    # the orders the ERP has (pulled by the backfill) are matched: no finding on them
    in_erp = set(outage["orders"]["erp"])
    assert not [f for f in findings if f[2] in in_erp]


def test_sandbox_faults_start_and_lift_at_runtime():
    sc = scenario.from_dict(outage_doc(datetime.now(timezone.utc)))
    with Sandbox(sc, time_scale=SCALE) as sb:
        url = sb.urls["shopify"] + "/_sandbox/faults"
        assert [f["kind"] for f in requests.get(url, timeout=5).json()] == ["down"]
        r = requests.post(url, json={"system": "walmart", "operation": "*", "kind": "http_status", "status": 503},
                          timeout=5)
        assert r.ok and [(f["system"], f["kind"]) for f in r.json()] == [("erp", "down"), ("walmart", "http_status")]
        assert requests.get(sb.urls["walmart"] + "/v3/items", timeout=5).status_code == 503
        assert requests.post(url, json={"system": "erp", "kind": "nope"}, timeout=5).status_code == 400
        r = requests.delete(url, params={"system": "walmart"}, timeout=5)
        assert [f["system"] for f in r.json()] == ["erp"]
        assert requests.get(sb.urls["walmart"] + "/v3/items", timeout=5).status_code != 503
        with pytest.raises(requests.ConnectionError):       # the ERP is down until its fault is lifted
            requests.get(sb.urls["erp"] + "/services/rest/record/v1/inventoryItem/501", timeout=5)
        assert sb.faults.lift(system="erp", kind="down") == 1
        assert requests.get(sb.urls["erp"] + "/services/rest/record/v1/inventoryItem/501", timeout=5).status_code < 500
