"""The checks corpus: every scenario under tests/scenarios/checks is landed in a fresh SQLite ledger and
reconciled; findings must match x_expected_findings exactly (recall and precision 100%)."""
from __future__ import annotations

from pathlib import Path

import pytest

from omnirecon.checks import reconcile  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon_contract.scenario import load  # noqa: E402
from tests.support.ledger_from_scenario import land_scenario  # noqa: E402

CORPUS = sorted((Path(__file__).resolve().parents[1] / "scenarios" / "checks").glob("*.yaml"))
KEY = ("check", "channel", "sku", "order_id", "diagnosis")


def _key(f: dict) -> tuple:
    return tuple(str(f.get(k) or "") for k in KEY)


def _reconcile(path: Path, tmp_path: Path):
    scenario = load(path)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    land_scenario(ledger, scenario)
    settings = settings_from_dict(scenario.raw.get("settings"))
    ledger.begin_run("reconcile/corpus", "reconcile")
    return scenario, reconcile(ledger, settings, run_id="reconcile/corpus", now=scenario.as_of)


def test_corpus_covers_every_check_and_diagnosis():
    from omnirecon.model.canonical import CHECKS, DIAGNOSES
    expected = [f for p in CORPUS for f in load(p).raw["x_expected_findings"]]
    assert {f["check"] for f in expected} == set(CHECKS)
    assert {f["diagnosis"] for f in expected} == set(DIAGNOSES)
    assert any(not load(p).raw["x_expected_findings"] for p in CORPUS), "no clean catalogue in the corpus"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_scenario(path, tmp_path):
    scenario, result = _reconcile(path, tmp_path)
    want = {_key(f): f for f in scenario.raw["x_expected_findings"]}
    got = {_key(f): f for f in result.findings}
    hits = set(want) & set(got)
    recall = len(hits) / len(want) if want else 1.0
    precision = len(hits) / len(got) if got else 1.0
    print(f"{path.stem}: recall {recall:.0%} precision {precision:.0%} ({len(got)} findings, {len(want)} expected)")
    assert set(got) - set(want) == set(), f"unexpected findings: {[got[k]['detail'] for k in set(got) - set(want)]}"
    assert set(want) - set(got) == set(), f"missed findings: {sorted(set(want) - set(got))}"
    for k in hits:   # severity and action are part of the contract too
        assert (got[k]["severity"], got[k]["action"]) == (want[k]["severity"], want[k]["action"]), k
        if want[k].get("location"):
            assert got[k]["location"] == want[k]["location"], k
    assert result.counts == {c: sum(1 for f in result.findings if f["check"] == c) for c in result.counts}
