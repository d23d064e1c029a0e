"""Outputs before and after a refactor are the same, field for field: every scenario of the checks corpus
and the bundled demo runs one in-process cycle against the sandbox (real hooks over HTTP, real GX, SQLite
ledger), and its findings.csv / corrections.csv, normalised (run ids and timestamps stripped), must equal the
files recorded in tests/golden/. `OMNIRECON_GOLDEN_UPDATE=1` rewrites them (only for an intended change)."""
from __future__ import annotations

import csv
import io
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from omnirecon_contract import scenario
from omnirecon.config import settings_from_dict
from omnirecon.ledger import Ledger
from omnirecon.report import exports
from omnirecon.runner import hooks_from_connections, run_cycle
from omnirecon_sandbox import Sandbox
from omnirecon.timeutil import utcnow

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CORPUS = sorted((ROOT / "tests" / "scenarios" / "checks").glob("*.yaml"))
SCENARIOS = [ROOT / "include" / "scenarios" / "demo.yaml"] + CORPUS
SCALE = 0.01
STRIPPED = ("run_id",)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
AGE = re.compile(r"(?<=up to |after )\d+ min")     # grows with the wall-clock time the cycle took


def normalise(data: bytes, stripped=STRIPPED) -> str:
    """CSV text without run ids, timestamps and ages, rows sorted (row order is not part of the contract)."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    columns = [c for c in reader.fieldnames or [] if c not in stripped]
    lines = sorted(",".join(AGE.sub("<n> min", TIMESTAMP.sub("<ts>", r[c])).replace(",", ";") for c in columns) for r in rows)
    return "\n".join([",".join(columns)] + lines) + "\n"


def outputs(path: Path, tmp_path: Path) -> dict[str, str]:
    sc = scenario.load(path)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    run_id = f"golden/{path.stem}"
    with Sandbox(sc, time_scale=SCALE) as sb:
        now = utcnow()
        run_cycle(ledger, settings_from_dict(sc.settings), hooks_from_connections(sb.connections(), time_scale=SCALE),
                  run_id=run_id, window_start=now - timedelta(days=15), window_end=now)
    return {"findings.csv": normalise(exports.findings_csv_bytes(ledger, run_id)),
            "corrections.csv": normalise(exports.csv_bytes(exports.corrections_rows(ledger, run_id),
                                                           exports.CORRECTIONS_COLUMNS))}


def compare(name: str, got: dict[str, str]) -> None:
    folder = GOLDEN / name
    if os.environ.get("OMNIRECON_GOLDEN_UPDATE") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in got.items():
            (folder / file).write_text(text)
    for file, text in got.items():
        want = (folder / file).read_text().splitlines()
        have = text.splitlines()
        assert have[0] == want[0], f"{name}/{file}: columns differ"
        assert sorted(set(want) - set(have)) == [] and sorted(set(have) - set(want)) == [], \
            f"{name}/{file}: rows differ\n- " + "\n- ".join(sorted(set(want) - set(have))) + \
            "\n+ " + "\n+ ".join(sorted(set(have) - set(want)))
        assert have == want, f"{name}/{file}: row counts differ"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_cycle_outputs_match_the_golden_files(path, tmp_path):
    compare(path.stem, outputs(path, tmp_path))
