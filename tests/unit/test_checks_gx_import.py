"""GX is imported without scipy.stats and altair, which still load when something reads them; a DAG file's
imports stay free of pandas and GX; the shared GX project keeps no config variables file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


def test_gx_imports_without_scipy_stats_and_altair_which_load_on_first_use():
    out = _run(
        "import sys\n"
        "from omnirecon.checks.gx_import import import_gx, is_deferred\n"
        "gx = import_gx()\n"
        "print(hasattr(gx, 'get_context'), is_deferred('scipy.stats'), is_deferred('altair'))\n"
        "from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl\n"
        "print(round(float(kl.stats.entropy([1, 2], [2, 1])), 4), is_deferred('scipy.stats'))\n"
        "from scipy.stats import norm\n"
        "print(type(sys.modules['scipy.stats']).__name__, norm.cdf(0))\n")
    assert out.splitlines() == ["True True True", "0.231 False", "module 0.5"]


def test_dag_files_import_neither_pandas_nor_gx():
    out = _run(
        "import importlib.util, sys\n"
        "for dag in sorted(__import__('pathlib').Path('dags').glob('*.py')):\n"
        "    spec = importlib.util.spec_from_file_location(dag.stem, dag)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print([m for m in ('pandas', 'great_expectations', 'scipy', 'matplotlib') if m in sys.modules])\n")
    assert out == "[]"


def test_preload_imports_the_reconcile_path_without_starting_threads_or_opening_connections():
    """Executors fork task processes from the process that imported it (forkserver, Celery's pool parent): a
    thread or an open socket there would be shared by, or lost in, every fork."""
    out = _run(
        "import os, sys, threading\n"
        "def sockets(): return [l for l in (os.path.realpath(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd')) if 'socket:' in l]\n"
        "before = sockets()\n"
        "import omnirecon.checks.preload\n"
        "print(threading.active_count(), all(m in sys.modules for m in ('omnirecon.checks.run', 'great_expectations')),"
        " sockets() == before)\n")
    assert out == "1 True True"


def test_preload_leaves_its_objects_out_of_the_collector_of_every_fork():
    """A task forked after the preload collects only its own objects: a full collection there no longer walks
    (and un-shares the memory of) every module object the worker preloaded."""
    out = _run(
        "import gc, os\n"
        "import omnirecon.checks.preload\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(w, f'{gc.get_freeze_count() > 100000} {len(gc.get_objects()) < gc.get_freeze_count() // 10}'.encode())\n"
        "    os._exit(0)\n"
        "os.close(w); os.wait(); print(os.read(r, 100).decode())\n")
    assert out == "True True"


def test_celery_worker_config_imports_the_preload(tmp_path, monkeypatch):
    """What `omnirecon airflow-init` writes reaches the Celery app Airflow's worker runs."""
    from omnirecon import airflow_setup
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    airflow_setup.write_cfg()
    r = subprocess.run([sys.executable, "-c",
                        "from airflow.providers.celery.executors.celery_executor import app; print(list(app.conf.imports))"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CELERY__")}
                       | {"AIRFLOW_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "['omnirecon.checks.preload']"


def test_shared_project_has_no_config_variables_file_path(tmp_path):
    from omnirecon.checks.suites import SuiteRunner
    from omnirecon.config import settings_from_dict
    import pandas as pd

    frame = pd.DataFrame({"channel": ["shopify"], "sku": ["A"], "location": ["L"], "delta": [5], "raw_delta": [5],
                          "sells_past_zero": [False]})
    for run in ("r1", "r2"):   # the first run creates the project, the next opens it
        failures = SuiteRunner(settings_from_dict({}), gx_dir=str(tmp_path)).run({"inventory_drift": frame}, run)
        assert [f.rule for f in failures["inventory_drift"]] == ["oversell", "in_flight"]
    config = (tmp_path / "gx" / "great_expectations.yml").read_text()
    assert "config_variables_file_path: uncommitted" not in config
