"""Faults on the native production topology (celery_support.py: PostgreSQL, CeleryExecutor on Redis, api-server,
scheduler, dag-processor and a Celery worker as processes, DAGs driven through the REST API, ledger on PostgreSQL).

* A Celery worker SIGKILLed mid-push with every process under it, then started afresh (the harness's supervisor,
  as a restart policy would): the scheduler sees the lost task instances stop heartbeating and retries them.
* PostgreSQL (Airflow's metadata DB and the ledger, on a private cluster) restarted twice in one reconcile run:
  right after the run's first findings land (its SKUs are checked by 4 shard tasks, so the restart meets the
  shards still running), and mid-push. Airflow processes that die of the outage are restarted by the supervisor
  (and recorded); tasks that fail are retried by Airflow.

The push faults are timed by the sandbox: the answer to each applied correction write is held (the channel has
the write, the pushing task's ledger claim is uncommitted) until every push task has written or a grace period
passed, then the fault strikes and the answers go out. Either way the run must end `success` with no correction
planned twice, no channel write applied twice (a Shopify replay of the same @idempotent key is answered from the
channel's key store, not applied again), the channels at the corrections' targets, and exactly the findings of an
unfaulted in-process run of the same pipeline on the same scenario (none lost, none doubled).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.celery_topology import TIME_SCALE, CeleryTopology, private_postgres, redis_broker, tail
from tests.support.services import temp_pg_database
from omnirecon_contract import scenario
from omnirecon.config import settings_from_dict
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.runner import hooks_from_connections, run_cycle
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.http import DropConnection
from omnirecon.timeutil import utcnow

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RECONCILE = "omnirecon_reconcile"
RECONCILE_CONF = {"mode": "apply", "approve_all": True}     # every correction is pushed, on every channel
SHARDS = 4          # the PostgreSQL test's run checks SKUs in 4 shard tasks: the first restart hits the others
PG_DOWNTIME_S = 3

# What a production deployment sets so that lost tasks come back quickly (Airflow's defaults: 300 s heartbeat
# timeout, 600 s queued timeout, orphan adoption every 300 s):
FAULT_ENV = {
    "OMNIRECON_TASK_RETRIES": "2",
    # a task whose supervisor stopped heartbeating (it heartbeats every [workers] min_heartbeat_interval = 5 s)
    # is failed -> up_for_retry after this long, checked every few seconds
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # a task the dead worker had taken from the broker but not started stays `queued` (acks_late: the message
    # is redelivered only after the broker's visibility timeout, 24 h): requeue it after 60 s
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # a restarted scheduler adopts the task instances of the one that died (once its job has missed
    # scheduler_health_check_threshold = 30 s of heartbeats) at this interval, not only at start-up
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
}
# The DAGs wait 1 min before a retry, doubling up to 5 min (dag_defaults.default_args); a cluster policy, the
# deployment's own lever, shortens that here so the test's retries come within seconds.
LOCAL_SETTINGS = '''"""Cluster policy of the fault tests: quick retries."""
from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds=3)
    task.max_retry_delay = timedelta(seconds=10)
'''
CORRECTION_WRITES = {"inventorySetQuantities", "patchListingsItem", "createFeed", "updateInventoryForAnItem",
                     "updateBulkInventory"}


@pytest.fixture
def broker_url(redis_url):
    with redis_broker(redis_url) as url:
        yield url


# -- the unfaulted reference --------------------------------------------------------------------------------------
def finding_key(f) -> tuple:
    get = f.get if isinstance(f, dict) else lambda k: getattr(f, k)
    return tuple(get(k) or "" for k in ("check", "channel", "sku", "location", "order_id", "diagnosis", "severity",
                                        "action"))


def baseline(sc, tmp_path) -> dict:
    """The same cycle in-process (omnirecon.runner: the library calls the DAG tasks make), no fault, on a sandbox of
    the same loaded scenario: its findings and corrections."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'baseline.db'}")
    ledger.migrate()
    with Sandbox(sc, time_scale=TIME_SCALE) as sb:
        now = utcnow()
        out = run_cycle(ledger, settings_from_dict(sc.settings), hooks_from_connections(sb.connections(), TIME_SCALE),
                        run_id="baseline", mode="apply", approve_all=True,
                        window_start=now - timedelta(hours=360), window_end=now)
        writes = applied_writes(sb)
    with ledger.session() as s:
        corrections = list(s.scalars(select(m.Correction)))
    ledger.engine.dispose()
    base = {"findings": Counter(finding_key(f) for f in out["findings_rows"]),
            "corrections": {(c.channel, c.sku, c.location): c.to_qty for c in corrections},
            "pushes": len({c.batch for c in corrections})}       # push tasks (mapped), one per batch
    # the scenario must give the faults something to hit: corrections pushed on every channel, all verified
    assert {c.channel for c in corrections} == {"shopify", "amazon", "walmart"}, corrections
    assert {c.status for c in corrections} == {"verified"}, [(c.channel, c.sku, c.status) for c in corrections]
    assert writes == {target(c): [c.to_qty] for c in corrections}
    return base


# -- channel writes and state -------------------------------------------------------------------------------------
def target(c: m.Correction) -> tuple:
    ref = c.ref or {}
    if c.channel == "shopify":
        return ("shopify", str(ref.get("inventory_item_id") or ref.get("inventoryItemId")),
                str(ref.get("location_id") or ref.get("locationId") or c.location))
    if c.channel == "amazon":
        return ("amazon", c.channel_sku, "")
    return ("walmart", c.channel_sku, str(ref.get("ship_node") or ref.get("shipNode") or c.location))


def applied_writes(sb, replays: list | None = None) -> dict[tuple, list[int]]:
    """{target: [quantities the channel applied there]} from the sandbox's record of received writes. Writes the
    channel did not apply (a replayed Shopify @idempotent key, a rejected call) go to `replays`."""
    out: dict[tuple, list[int]] = {}
    for w in sb.writes():
        if w["operation"] not in CORRECTION_WRITES:
            continue
        if not w["applied"]:
            if replays is not None:
                replays.append((w["system"], w["operation"], w["key"]))
            continue
        body = w["body"] or {}
        if w["operation"] == "inventorySetQuantities":
            for q in body["quantities"]:
                out.setdefault(("shopify", q["inventoryItemId"], q["locationId"]), []).append(q["quantity"])
        elif w["operation"] == "patchListingsItem":
            out.setdefault(("amazon", w["key"], ""), []).append(body["patches"][0]["value"][0]["quantity"])
        elif w["operation"] == "createFeed":
            for msg in body["messages"]:
                out.setdefault(("amazon", msg["sku"], ""), []).append(msg["patches"][0]["value"][0]["quantity"])
        elif w["operation"] == "updateInventoryForAnItem":
            sku, node = w["key"].split("@", 1)
            out.setdefault(("walmart", sku, node), []).append(body["quantity"]["amount"])
        else:   # updateBulkInventory
            for item in body["inventory"]:
                for node in item["shipNodes"]:
                    out.setdefault(("walmart", item["sku"], node["shipNode"]), []).append(node["quantity"]["amount"])
    return out


def channel_quantity(state: dict, c: m.Correction):
    _, key, where = target(c)
    if c.channel == "shopify":
        levels = [lv for v in state["shopify"]["variants"] if v["inventory_item_id"] == key for lv in v["levels"]
                  if lv["location_id"] == where]
        return levels[0]["available"] if levels else None
    if c.channel == "amazon":
        return next((li["quantity"] for li in state["amazon"]["listings"] if li["sku"] == key), None)
    return next((i["quantity"] for i in state["walmart"]["items"] if i["sku"] == key and i["ship_node"] == where),
                None)


class FaultAfterWrites:
    """Holds the answer to every applied correction write (the channel has applied it; the pushing task waits for
    the answer, its ledger claim uncommitted) until `expect` writes are held or `grace_s` passed since the first,
    then runs `action` once, in the sandbox's request thread, and releases the answers (`answer=False`: resets
    those connections instead, for peers that are dead by then). Answers are held after the channel's handler
    returned, outside the sandbox's lock, so the other pushes go on meanwhile."""

    def __init__(self, sb, action, expect: int, grace_s: float = 10.0, answer: bool = True):
        self.action, self.expect, self.grace_s, self.answer = action, expect, grace_s, answer
        self.held: list[tuple] = []
        self.fired, self.error, self.first_at = threading.Event(), None, None
        self._cond, self._local = threading.Condition(), threading.local()
        record = sb.record_write

        def record_write(system, operation, key, body, applied, **kw):
            record(system, operation, key, body, applied, **kw)
            if applied and operation in CORRECTION_WRITES:
                self._local.write = (system, operation, key)
        sb.record_write = record_write
        for name in ("shopify", "amazon", "walmart"):
            system = sb.systems[name]

            def handle(req, _handle=system.handle):
                self._local.write = None
                resp = _handle(req)
                if self._local.write is not None and self._hold(self._local.write) and not self.answer:
                    raise DropConnection()
                return resp
            system.handle = handle

    def _hold(self, write: tuple) -> bool:
        """-> whether this write was held until the fault."""
        with self._cond:
            if self.fired.is_set():
                return False
            self.held.append(write)
            self.first_at = self.first_at or time.monotonic()
            self._cond.notify_all()
            deadline = self.first_at + self.grace_s
            while not self.fired.is_set() and len(self.held) < self.expect and time.monotonic() < deadline:
                self._cond.wait(max(deadline - time.monotonic(), 0.01))
            if not self.fired.is_set():
                try:
                    self.action()
                except BaseException as e:      # reported by the test, not lost in the sandbox's thread
                    self.error = e
                finally:
                    self.fired.set()
                    self._cond.notify_all()
            return True


# -- the invariants ----------------------------------------------------------------------------------------------
def assert_no_duplicate_no_loss(ledger: Ledger, sb, run: str, base: dict) -> dict:
    with ledger.session() as s:
        corrections = list(s.scalars(select(m.Correction).where(m.Correction.run_id == run)))
        findings = list(s.scalars(select(m.Finding).where(m.Finding.run_id == run)))
        claims = dict(s.execute(select(m.AuditLog.correction_id, func.count())
                                .where(m.AuditLog.run_id == run, m.AuditLog.operation == "claim")
                                .group_by(m.AuditLog.correction_id)).all())
    described = [(c.channel, c.sku, c.location, c.to_qty, c.status, c.attempts, c.detail) for c in corrections]

    # no duplicate correction: one per (channel, sku, location), keys unique, the reference's corrections exactly
    places = Counter((c.channel, c.sku, c.location) for c in corrections)
    assert max(places.values()) == 1, described
    assert len({c.idempotency_key for c in corrections}) == len(corrections), described
    assert {(c.channel, c.sku, c.location): c.to_qty for c in corrections} == base["corrections"], described
    assert {c.status for c in corrections} == {"verified"}, described

    # no correction applied twice at the channel, none lost: one applied write per correction, at its target
    replays: list = []
    writes = applied_writes(sb, replays)
    assert writes == {target(c): [c.to_qty] for c in corrections}, (writes, described)
    state = sb.state()
    assert {target(c): channel_quantity(state, c) for c in corrections} == {target(c): c.to_qty for c in corrections}

    # no lost finding (and none doubled by a retried reconcile)
    got = Counter(finding_key(f) for f in findings)
    assert got == base["findings"], {"missing": base["findings"] - got, "extra": got - base["findings"]}
    return {"corrections": len(corrections), "findings": len(findings), "replays": replays,
            "attempts": {f"{c.channel}:{c.sku}": c.attempts for c in corrections if c.attempts != 1},
            "claims": sum(claims.values())}


def push_tries(api, run_id: str) -> dict:
    return {ti["map_index"]: ti["try_number"] for ti in api.task_instances(RECONCILE, run_id) if ti["task_id"] == "push"}


# -- the tests ----------------------------------------------------------------------------------------------------
def test_worker_killed_mid_push(tmp_path, monkeypatch, pg_ledger, broker_url, demo_scenario_path, capsys):
    t0 = time.monotonic()
    sc = scenario.load(str(demo_scenario_path))
    base = baseline(sc, tmp_path)
    with temp_pg_database("omnirecon_airflow") as metadata_url, \
            CeleryTopology(tmp_path, monkeypatch, metadata_url=metadata_url, broker_url=broker_url,
                           ledger_url=pg_ledger.url, scenario_obj=sc, env=FAULT_ENV, local_settings=LOCAL_SETTINGS,
                           restart_dead=True) as af:
        started = time.monotonic()
        af.api.run_dag("omnirecon_snapshot", {"lookback_hours": 360})
        killed: list[int] = []
        fault = FaultAfterWrites(af.sb, lambda: killed.extend(af.kill_worker()), expect=base["pushes"], answer=False)
        run_id = af.api.trigger(RECONCILE, RECONCILE_CONF)
        af.api.wait(fault.fired.is_set, 240, "the run's correction writes")
        killed_at = time.monotonic()
        assert fault.error is None, fault.error
        # the supervisor in every wait starts a fresh worker, as a restart policy would
        af.api.wait_run(RECONCILE, run_id)
        recovered = time.monotonic() - killed_at
        tries = push_tries(af.api, run_id)
        outcome = assert_no_duplicate_no_loss(pg_ledger, af.sb, f"{RECONCILE}/{run_id}", base)

        assert len({w[0] for w in fault.held}) >= 2, fault.held   # killed with writes in flight on 2+ channels
        assert len(killed) >= 3, killed          # the worker, its pool processes, task supervisors and tasks
        assert [(r.process, r.exit_code) for r in af.restarts] == [("worker", -9)], af.restarts
        assert max(tries.values()) >= 2, tries   # the killed pushes ran again, on the new worker
        assert "Detected a task instance without a heartbeat" in tail(af.logs["scheduler"], 10**7)
    with capsys.disabled():
        print(f"\n[worker kill] held writes {fault.held}; killed {len(killed)} processes; push tries {tries}; "
              f"run done {recovered:.0f} s after the kill; {outcome}; topology {time.monotonic() - started:.0f} s,"
              f" test {time.monotonic() - t0:.0f} s")


def test_postgres_restarted_mid_run(tmp_path, monkeypatch, broker_url, demo_scenario_path, capsys):
    t0 = time.monotonic()
    sc = scenario.load(str(demo_scenario_path))
    base = baseline(sc, tmp_path)
    timers: list[threading.Thread] = []
    with private_postgres() as pg:
        metadata_url = pg.create_database("airflow")
        ledger = Ledger(pg.create_database("omnirecon"))
        ledger.migrate()

        def restart_now():
            """fast shutdown (sessions cut, open transactions rolled back), a few seconds down, start again"""
            pg.stop("fast")
            time.sleep(PG_DOWNTIME_S)
            pg.start()

        def restart_in_background():
            """the same, from the sandbox's request thread: the held answers go out while PostgreSQL is down"""
            pg.stop("fast")
            timer = threading.Timer(PG_DOWNTIME_S, pg.start)
            timer.start()
            timers.append(timer)
        try:
            with CeleryTopology(tmp_path, monkeypatch, metadata_url=metadata_url, broker_url=broker_url,
                                ledger_url=ledger.url, scenario_obj=sc, env=FAULT_ENV, local_settings=LOCAL_SETTINGS,
                                restart_dead=True) as af:
                started = time.monotonic()
                af.api.run_dag("omnirecon_snapshot", {"lookback_hours": 360})
                fault = FaultAfterWrites(af.sb, restart_in_background, expect=base["pushes"])
                run_id = af.api.trigger(RECONCILE, {**RECONCILE_CONF, "shards": SHARDS})
                run = f"{RECONCILE}/{run_id}"

                def findings_landed():
                    with ledger.session() as s:
                        return s.scalar(select(func.count()).select_from(m.Finding).where(m.Finding.run_id == run))
                af.api.wait(findings_landed, 240, "the run's first findings", interval=0.2)
                restart_now()                                   # 1. in the reconcile stage
                af.api.wait(fault.fired.is_set, 240, "the run's correction writes")   # 2. mid-push
                assert fault.error is None, fault.error
                for timer in timers:
                    timer.join()
                af.api.wait_run(RECONCILE, run_id)
                tis = af.api.task_instances(RECONCILE, run_id)
                tries = {ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["try_number"]
                         for ti in tis}
                outcome = assert_no_duplicate_no_loss(ledger, af.sb, run, base)

                assert (len(pg.stops), len(pg.starts)) == (2, 3), (pg.stops, pg.starts)
                assert len({w[0] for w in fault.held}) >= 2, fault.held
                # the pushes whose write was answered while PostgreSQL was down failed and ran again
                assert max(ti["try_number"] for ti in tis if ti["task_id"] == "push") >= 2, tries
                restarts = [(r.process, r.exit_code, r.at_s) for r in af.restarts]
        finally:
            for timer in timers:
                timer.join()
            ledger.engine.dispose()
    with capsys.disabled():
        print(f"\n[postgres restart] held writes {fault.held}; tries {tries}; process restarts {restarts}; "
              f"{outcome}; topology {time.monotonic() - started:.0f} s, test {time.monotonic() - t0:.0f} s")
