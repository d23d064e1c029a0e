"""Fault injection: the push worker is SIGKILLed at random points (seeded) against the real sandbox over HTTP and
a real ledger (SQLite file, PostgreSQL); re-runs complete the batch. The sandbox's audit of received writes must
show no correction applied twice, every correction must end verified, and the ledger audit must be consistent.
Exception: rows of a feed whose worker died mid-submission are in doubt (the feed may or may not have gone out);
they stay `applied`, are never submitted again, and the channel shows either the target or the old quantity.

A worker is a child process forked from a preloaded forkserver. It dies in one of two ways:
- crash point: its n-th call into a channel hook SIGKILLs the process right before or right after the call
  (after = the channel has the write, the ledger transaction holding the claim has not committed);
- random delay: the parent SIGKILLs it a random time after it started pushing.
"""
import itertools
import multiprocessing
import os
import random
import signal
import sys
import time
from multiprocessing import forkserver

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import configure_mappers
from tests.integration.test_remediation_sandbox import (QUICK, SETTINGS, SKUS, TIME_SCALE, amazon_finding, channel_state,  # noqa: E402
                                      scenario, shopify_finding, walmart_finding)
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots  # noqa: E402

from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.hooks import hook_class, hook_from_fields  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.remediation import push as push_mod  # noqa: E402
from omnirecon.remediation import plan as plan_mod  # noqa: E402
from omnirecon.remediation.channels import CONN_IDS  # noqa: E402
from omnirecon.remediation.plan import plan_corrections  # noqa: E402
from omnirecon_sandbox import Sandbox  # noqa: E402

# every correction moves by a few units: under the approval threshold, so all are planned and pushed
FINDINGS = ([shopify_finding(s, q) for s, q in zip(SKUS, (10, 5, 6, 3))]
            + [amazon_finding(s, q) for s, q in zip(SKUS, (7, 2, 4, 6))]
            + [walmart_finding(s, q) for s, q in zip(SKUS, (9, 8, 5, 4))])
HOOK_CALLS = 2 + 2 * 3 * len(SKUS)     # Shopify: one set + one read-back; Amazon, Walmart: re-read, write, read-back
WORKER_TIMEOUT_S = 60
_MP = multiprocessing.get_context("forkserver")
_MP.set_forkserver_preload([__name__])    # workers fork from a server that imported this module: they start warm
for _system in CONN_IDS:
    hook_class(_system)                       # the hook modules (and Airflow under them) load lazily
configure_mappers()


def _start_forkserver() -> None:
    """Python 3.11's forkserver ignores sys.path when preloading: hand it ours through PYTHONPATH."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        forkserver.ensure_running()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


# -- the worker (runs in the child) -----------------------------------------------------------------------------
class _KillSwitch:
    """A real hook whose n-th channel call (counted across the worker's hooks) SIGKILLs this process."""

    def __init__(self, hook, calls, crash_at):
        object.__setattr__(self, "_hook", hook)
        object.__setattr__(self, "_calls", calls)
        object.__setattr__(self, "_crash_at", crash_at)

    def __getattr__(self, name):
        attr = getattr(self._hook, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args, **kwargs):
            n = next(self._calls)
            if self._crash_at == (n, "before"):
                os.kill(os.getpid(), signal.SIGKILL)
            result = attr(*args, **kwargs)
            if self._crash_at == (n, "after"):
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return call

    def __setattr__(self, name, value):      # push sets `audit` on the hook
        setattr(self._hook, name, value)


def _worker(ledger_url: str, conns: dict, batches: list[dict], crash_at, started) -> None:
    ledger = Ledger(ledger_url)
    settings = settings_from_dict(SETTINGS, {"mode": "apply"})
    calls = itertools.count(1)

    def factory(channel):
        fields = dict(conns[CONN_IDS[channel]])
        fields["extra"] = {**fields.get("extra", {}), "time_scale": TIME_SCALE}
        return _KillSwitch(hook_from_fields(channel, fields), calls, crash_at)
    started.set()
    for batch in batches:
        push_mod.push_batch(ledger, settings, batch, hook_factory=factory, clock=QUICK)


def _run_worker(ledger, conns, batches, crash_at=None, kill_after_s=None) -> int:
    """Run one worker to its end (or its death); returns its exit code (-9: killed)."""
    _start_forkserver()
    started = _MP.Event()
    proc = _MP.Process(target=_worker, args=(ledger.url, conns, batches, crash_at, started))
    proc.start()
    if kill_after_s is not None and started.wait(WORKER_TIMEOUT_S):
        time.sleep(kill_after_s)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(WORKER_TIMEOUT_S)
    if proc.is_alive():
        proc.kill()
        pytest.fail("a push worker hung")
    return proc.exitcode


# -- checks (in the test process) -------------------------------------------------------------------------------
def _applied_writes(sb) -> dict[tuple, list]:
    """{(system, target): [quantities the channel applied]} from the sandbox's audit of received writes."""
    out: dict[tuple, list] = {}
    for w in sb.writes():
        if not w["applied"]:
            continue                                    # e.g. a replay of a Shopify @idempotent key
        if w["system"] == "shopify":
            for q in w["body"]["quantities"]:
                out.setdefault(("shopify", q["inventoryItemId"]), []).append(q["quantity"])
        elif w["operation"] == "createFeed":
            for msg in w["body"]["messages"]:
                out.setdefault(("amazon", msg["sku"]), []).append(msg["patches"][0]["value"][0]["quantity"])
        elif w["operation"] == "updateBulkInventory":
            for item in w["body"]["inventory"]:
                for node in item["shipNodes"]:
                    out.setdefault(("walmart", item["sku"]), []).append(node["quantity"]["amount"])
        elif w["system"] == "amazon":
            qty = w["body"]["patches"][0]["value"][0]["quantity"]
            out.setdefault(("amazon", w["key"]), []).append(qty)
        else:
            out.setdefault(("walmart", w["key"].split("@")[0]), []).append(w["body"]["quantity"]["amount"])
    return out


def _target(c: m.Correction) -> tuple:
    return (c.channel, c.ref["inventory_item_id"] if c.channel == "shopify" else c.channel_sku)


def _assert_outcome(ledger, sb) -> int:
    """-> how many corrections are in doubt (a worker was killed while submitting their feed)."""
    shop, amazon, walmart = channel_state(sb)      # first: a state dump settles feeds that are due
    writes = _applied_writes(sb)
    with ledger.session() as s:
        corrections = list(s.scalars(select(m.Correction)))
        audit = list(s.scalars(select(m.AuditLog).where(m.AuditLog.actor == push_mod.ACTOR)
                               .order_by(m.AuditLog.id)))
    shown = {("shopify", k): v for k, v in shop.items()} | {("amazon", k): v for k, v in amazon.items()} | \
        {("walmart", k): v for k, v in walmart.items()}
    assert len(corrections) == len(FINDINGS)
    assert set(writes) <= {_target(c) for c in corrections}          # nothing else was written
    in_doubt = 0
    for c in corrections:
        got = writes.get(_target(c))
        if c.status == "applied" and c.external_id == push_mod.FEED_PENDING:
            # killed mid-submission: the feed may or may not have gone out; it is never sent again
            in_doubt += 1
            assert got in (None, [c.to_qty]), (_target(c), got)
            assert shown[(c.channel, c.sku)] == (c.to_qty if got else c.from_qty)
            expected_chain = ["planned", "applied"]
        else:
            assert c.status == "verified", (c.sku, c.channel, c.status, c.detail)
            assert got == [c.to_qty], (_target(c), got)             # the channel applied it exactly once
            assert shown[(c.channel, c.sku)] == c.to_qty
            expected_chain = ["planned", "applied", "verified"]
        rows = [a for a in audit if a.correction_id == c.id]
        changes = [a for a in rows if a.request and "from_status" in a.request]
        chain = ["planned"] + [a.outcome for a in changes]        # the ledger's story of each correction: one chain
        assert [a.request["from_status"] for a in changes] == chain[:-1], chain
        assert chain == expected_chain, chain
        assert c.attempts == sum(a.operation == "claim" for a in rows) >= 1
    return in_doubt


def _reset(ledger) -> None:
    with ledger.session() as s:
        for table in reversed(m.Base.metadata.sorted_tables):
            s.execute(delete(table))


def _prepare(ledger, feeds=False) -> list[dict]:
    _reset(ledger)
    add_run(ledger)
    fresh_snapshots(ledger, SKUS)
    for f in FINDINGS:
        add_finding(ledger, **f)
    with pytest.MonkeyPatch.context() as mp:
        if feeds:
            mp.setattr(plan_mod, "PER_SKU_MAX", 1)          # Amazon and Walmart through feeds
        plan = plan_corrections(ledger, settings_from_dict(SETTINGS, {"mode": "apply"}), run_id=RUN, mode="apply")
    assert {b["method"] for b in plan.batches} == ({"set_quantities", "feed"} if feeds
                                                    else {"set_quantities", "patch", "put"})
    assert plan.counts == {"planned": len(FINDINGS)}
    return plan.batches


def _kill_runs(ledger, runs: int, seed: int, feeds: bool = False) -> dict:
    """`runs` times: a fresh sandbox and an emptied ledger, one or two killed workers, then two that complete."""
    tally = {"killed": 0, "finished_before_kill": 0, "in_doubt": 0}
    for i in range(runs):
        rng = random.Random(seed * 1000 + i)
        batches = _prepare(ledger, feeds)
        sb = Sandbox(scenario(), time_scale=TIME_SCALE).start()
        try:
            conns = sb.connections()
            for _ in range(rng.choice((1, 1, 2))):
                if rng.random() < 0.7:
                    crash_at = (rng.randint(1, HOOK_CALLS), rng.choice(("before", "after")))
                    code = _run_worker(ledger, conns, batches, crash_at=crash_at)
                else:
                    code = _run_worker(ledger, conns, batches, kill_after_s=rng.uniform(0.0, 1.5))
                assert code in (0, -signal.SIGKILL)
                tally["killed" if code == -signal.SIGKILL else "finished_before_kill"] += 1
            assert _run_worker(ledger, conns, batches) == 0
            _assert_outcome(ledger, sb)
            writes = len(sb.writes())
            assert _run_worker(ledger, conns, batches) == 0        # one more re-run: nothing new
            in_doubt = _assert_outcome(ledger, sb)
            assert len(sb.writes()) == writes or in_doubt           # (only an in-doubt feed may land late)
            tally["in_doubt"] += in_doubt
        finally:
            sb.stop()
    return tally


def test_killed_pushes_never_write_twice_sqlite(tmp_path):
    ledger = Ledger("sqlite:///" + str(tmp_path / "ledger.db"))
    ledger.migrate()
    tally = _kill_runs(ledger, runs=24, seed=6)
    assert tally["killed"] >= 15, tally          # 20 of 32 workers died mid-push when measured


@pytest.mark.postgres
def test_killed_pushes_never_write_twice_postgres(pg_url):
    ledger = Ledger(pg_url)
    ledger.migrate()
    try:
        tally = _kill_runs(ledger, runs=8, seed=7)
    finally:
        ledger.engine.dispose()
    assert tally["killed"] >= 5, tally


def test_killed_feed_pushes_never_write_twice_sqlite(tmp_path):
    ledger = Ledger("sqlite:///" + str(tmp_path / "ledger.db"))
    ledger.migrate()
    tally = _kill_runs(ledger, runs=12, seed=8, feeds=True)
    assert tally["killed"] >= 6, tally           # 10 of 18 when measured
