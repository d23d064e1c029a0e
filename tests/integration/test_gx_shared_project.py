"""Reconcile shards on several workers share one GX file project: concurrent task processes each validate every
suite in it, and none fails or loses another's assets, suites or validation results."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _validate_all(gx_dir: str, db: str, tag: str, rounds: int) -> None:
    from omnirecon.checks import compare
    from omnirecon.checks.load import load_view
    from omnirecon.checks.suites import SuiteRunner
    from omnirecon.config import settings_from_dict
    from omnirecon.ledger.db import Ledger
    from omnirecon_contract.scenario import load

    sc = load(ROOT / "include" / "scenarios" / "demo.yaml")
    settings = settings_from_dict(sc.raw["settings"])
    view = load_view(Ledger(f"sqlite:///{db}"), sc.as_of, systems=["erp"] + settings.channels)
    frames = compare.build(view, settings, settings.channels).frames
    for i in range(rounds):
        failures = SuiteRunner(settings, gx_dir).run(frames, f"omnirecon_reconcile/run#{tag}-{i}")
        assert failures["inventory_drift"], "the demo has drift"


def test_concurrent_tasks_share_one_gx_project(tmp_path):
    from omnirecon.ledger.db import Ledger
    from omnirecon_contract.scenario import load
    from tests.support.ledger_from_scenario import land_scenario

    db = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{db}")
    ledger.migrate()
    land_scenario(ledger, load(ROOT / "include" / "scenarios" / "demo.yaml"))
    gx_dir = tmp_path / "gx"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_validate_all, args=(str(gx_dir), str(db), f"shard{k}", 2)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    results = [json.loads(f.read_text()) for f in (gx_dir / "gx" / "uncommitted" / "validations").rglob("*.json")]
    runs = {r["meta"]["run_id"]["run_name"] for r in results}
    assert runs == {f"omnirecon_reconcile__run#shard{k}-{i}" for k in range(3) for i in range(2)}
    assert len(results) == 3 * 2 * 8    # every suite of every run of every task
