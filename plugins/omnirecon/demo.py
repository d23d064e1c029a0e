"""`omnirecon demo` and `omnirecon up`: the whole pipeline through real Airflow against the local sandbox."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from omnirecon import airflow_setup
from omnirecon_contract import scenario
from omnirecon.config import project_home, settings_from_dict
from omnirecon.ledger import get_ledger, ledger_url
from omnirecon.sandbox_process import SandboxProcess

EXIT_OK, EXIT_OUTAGE = 0, 3
STAGES = (("snapshot", "omnirecon_snapshot"), ("reconcile + remediate", "omnirecon_reconcile"),
          ("report", "omnirecon_daily_report"))


def _say(msg: str) -> None:
    print(msg, flush=True)


def _scaled(connections: dict, time_scale: float) -> dict:
    """Tell the hooks the sandbox's time scale, so pacing and backoff shrink with its rate limits."""
    return {cid: {**c, "extra": {**(c.get("extra") or {}), "time_scale": time_scale}} for cid, c in connections.items()}


def _ledger_conn(url: str) -> dict:
    if url.startswith("sqlite:///"):
        return {"conn_type": "sqlite", "host": url[len("sqlite:///"):]}
    return {"conn_type": "postgres", "extra": {"sqlalchemy_url": url}}


class _Progress(threading.Thread):
    """Prints each snapshot as it lands in the ledger, and a heartbeat while a stage runs."""

    def __init__(self, ledger, since_id: int):
        super().__init__(daemon=True)
        self.ledger, self.since_id, self.stop_flag, self.stage_started = ledger, since_id, threading.Event(), time.monotonic()

    def run(self):
        from sqlalchemy import select
        from omnirecon.ledger.models import Snapshot
        last_beat = time.monotonic()
        while not self.stop_flag.wait(1.0):
            try:
                with self.ledger.session() as s:
                    rows = s.scalars(select(Snapshot).where(Snapshot.id > self.since_id).order_by(Snapshot.id)).all()
            except Exception:
                rows = []
            for snap in rows:
                self.since_id = snap.id
                mark = {"complete": "ok", "unusable": "UNUSABLE", "failed": "FAILED"}.get(snap.status, snap.status)
                extra = f" ({snap.error.splitlines()[0][:120]})" if snap.error else ""
                _say(f"      {snap.system:8s} {snap.kind:9s} {mark:8s} rows={snap.rows_valid} quarantined={snap.rows_quarantined}"
                     f" api_calls={snap.api_calls}{extra}")
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                _say(f"      ... still running ({time.monotonic() - self.stage_started:.0f}s)")


STAGE_MARK = "@@omnirecon-demo-stage"


def _dags_test_stages(runs: list[tuple[str, dict]], env: dict, logs: Path):
    """`airflow dags test` of each DAG in turn, in ONE Airflow process: Airflow's start-up (the CLI, the
    in-process execution API, the DAG bag) and the task imports (pandas, GX) are paid once, not once per DAG.
    Yields (dag_id, exit code) as each DAG run ends; each DAG's output goes to logs/<dag_id>.log."""
    cmd = [sys.executable, "-c", "import sys, omnirecon.demo as d; sys.exit(d.dags_test_main(sys.argv[1]))",
           json.dumps(runs)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    log = None
    try:
        for line in proc.stdout:
            if line.startswith(STAGE_MARK):
                _, what, dag_id, *rc = line.split()
                if log:
                    log.close()
                    log = None
                if what == "start":
                    log = open(logs / f"{dag_id}.log", "w")
                else:
                    yield dag_id, int(rc[0])
            elif log:
                log.write(line)
        proc.wait()
    finally:
        if log:
            log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def dags_test_main(runs_json: str) -> int:
    """The child of _dags_test_stages: what `airflow dags test DAG -c CONF` does, for each (DAG, conf)."""
    import traceback

    from airflow import configuration  # noqa: F401  (first, as airflow/__main__.py does)
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    parser = cli_parser.get_parser()
    write_default_airflow_configuration_if_needed()
    for dag_id, conf in json.loads(runs_json):
        print(f"{STAGE_MARK} start {dag_id}", flush=True)
        try:
            sys.argv = ["airflow", "dags", "test", dag_id, "-c", json.dumps(conf)]   # as DAG files see the CLI
            args = parser.parse_args(sys.argv[1:])
            args.func(args)
            rc = 0
        except SystemExit as e:   # "DagRun failed"
            print(e, flush=True)
            rc = e.code if isinstance(e.code, int) else 1
        except Exception:
            traceback.print_exc()
            rc = 1
        sys.stderr.flush()
        print(f"{STAGE_MARK} end {dag_id} {rc}", flush=True)
    return 0


def run_demo(*, scenario_path: str, out_dir: str, mode: str = "apply", approve_all: bool = False,
             time_scale: float = 0.01) -> int:
    from omnirecon.report import exports

    t0 = time.monotonic()
    sc = scenario.load(scenario_path)
    settings_from_dict(sc.settings, source=f"{scenario_path}: settings")
    out = Path(out_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    airflow_setup.init(quiet=True)
    state = fresh_state(out / "state")
    settings_file = state.dir / "retailer.yaml"
    settings_file.write_text(yaml.safe_dump(sc.raw.get("settings", {}), sort_keys=False))

    _say(f"omnirecon demo: scenario {sc.name!r} ({', '.join(sc.systems)}), mode {mode}"
         f"{', approving all' if approve_all else ''}")
    _say(f"[state] a clean ledger {state.ledger_url} and Airflow metadata {state.airflow_url} for this run")
    url = state.ledger_url
    ledger = get_ledger(url)
    first_snapshot = _max_snapshot_id(ledger)

    sb = SandboxProcess(scenario_path, state.dir, time_scale=time_scale, state_out=out / "sandbox_state.json")
    with sb:
        _say(f"[sandbox] serving {', '.join(f'{k} {v}' for k, v in sb.urls.items())}")
        env = airflow_setup.airflow_env({
            **airflow_setup.connection_env(_scaled(sb.connections, time_scale)),
            **airflow_setup.connection_env({"omnirecon_ledger": _ledger_conn(url)}),
            "OMNIRECON_LEDGER_URL": url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": state.airflow_url,
            "OMNIRECON_SETTINGS": str(settings_file),
            "OMNIRECON_REPORTS_DIR": str(out),   # the report stage writes into --out
            "OMNIRECON_MODE": mode,
            "OMNIRECON_TASK_RETRIES": "0",   # show an outage at once instead of retrying for minutes
        })
        confs = {
            "omnirecon_snapshot": {"lookback_hours": 24 * 15},
            "omnirecon_reconcile": {"mode": mode, "approve_all": approve_all},
            "omnirecon_daily_report": {"out_dir": str(out), "send": False},
        }
        stages = _dags_test_stages([(dag_id, confs[dag_id]) for _, dag_id in STAGES], env, out / "logs")
        try:
            for i, (label, dag_id) in enumerate(STAGES, 1):
                _say(f"[{i}/{len(STAGES)}] {label}: airflow dags test {dag_id}  (log: {out / 'logs' / (dag_id + '.log')})")
                progress = _Progress(ledger, _max_snapshot_id(ledger))
                progress.start()
                ts = time.monotonic()
                ended, rc = next(stages, (None, None))
                progress.stop_flag.set()
                progress.join()
                if ended != dag_id:
                    raise SystemExit(f"omnirecon demo: Airflow stopped before {dag_id} ended; see {out / 'logs'}")
                _say(f"      {'done' if rc == 0 else f'finished with failed tasks (exit {rc})'} in {time.monotonic() - ts:.1f}s")
                if dag_id == "omnirecon_reconcile" and _latest_run(ledger, "reconcile", first_snapshot) is None:
                    raise SystemExit(f"omnirecon demo: reconciliation did not run; see {out / 'logs' / (dag_id + '.log')}")
                if dag_id == "omnirecon_daily_report" and not (out / "report.html").exists():
                    raise SystemExit(f"omnirecon demo: the report was not written; see {out / 'logs' / (dag_id + '.log')}")
            for _ in stages:   # let Airflow exit
                pass
        finally:
            stages.close()   # stops Airflow if a stage check failed
    # leaving the block stopped the sandbox, which wrote sandbox_state.json

    reconcile_run = _latest_run(ledger, "reconcile", first_snapshot)
    snapshot_run = _latest_run(ledger, "snapshot", first_snapshot)
    duration = round(time.monotonic() - t0, 1)
    exports.write_findings_csv(ledger, reconcile_run, out / "findings.csv")
    exports.write_corrections_csv(ledger, reconcile_run, out / "corrections.csv")
    summary = exports.write_summary_json(ledger, run_id=reconcile_run, snapshot_run_ids=[snapshot_run],
                                         duration_s=duration, path=out / "summary.json")
    missing = _failed_systems(ledger, snapshot_run, sc.systems)
    _print_summary(summary, out, missing)
    return EXIT_OUTAGE if missing else EXIT_OK


@dataclasses.dataclass(frozen=True)
class DemoState:
    dir: Path

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.dir / 'ledger.db'}"

    @property
    def airflow_url(self) -> str:
        return f"sqlite:///{self.dir / 'airflow.db'}"


def fresh_state(path: Path) -> DemoState:
    """A demo's own state, made anew each run so that scenarios never mix: an empty ledger and a copy of the home's
    clean Airflow metadata database (no runs of earlier demos), both under `--out`/state/."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    state = DemoState(path)
    shutil.copyfile(airflow_setup.clean_metadata_db(), path / "airflow.db")
    get_ledger(state.ledger_url)   # created and migrated
    return state


def _max_snapshot_id(ledger) -> int:
    from sqlalchemy import func, select
    from omnirecon.ledger.models import Snapshot
    with ledger.session() as s:
        return s.scalar(select(func.max(Snapshot.id))) or 0


def _latest_run(ledger, kind: str, after_snapshot: int) -> str | None:
    from sqlalchemy import select
    from omnirecon.ledger.models import Run
    with ledger.session() as s:
        return s.scalar(select(Run.id).where(Run.kind == kind).order_by(Run.started_at.desc()).limit(1))


def _failed_systems(ledger, snapshot_run: str | None, systems) -> list[str]:
    """Connected systems without a complete snapshot of every kind in this demo's snapshot run."""
    from sqlalchemy import select
    from omnirecon.ledger.models import Snapshot
    with ledger.session() as s:
        rows = s.execute(select(Snapshot.system, Snapshot.kind, Snapshot.status)
                         .where(Snapshot.run_id == snapshot_run)).all() if snapshot_run else []
    ok = {}
    for system, kind, status in rows:
        ok.setdefault(system, set())
        if status == "complete":
            ok[system].add(kind)
    return [s for s in systems if ok.get(s) != {"inventory", "listings", "orders"}]


def _print_summary(summary: dict, out: Path, missing: list[str]) -> None:
    _say("")
    _say(f"run {summary['run_id']}: {summary['skus_checked']} SKUs checked in {summary['duration_s']}s")
    f = summary["findings"]
    _say("  findings:    " + (", ".join(f"{k} {v}" for k, v in sorted(f.items())) or "none"))
    c = summary["corrections"]
    _say("  corrections: " + (", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"))
    for system, snap in summary["snapshots"].items():
        _say(f"  {system:8s} rows={snap['rows']} quarantined={snap['quarantined']} fetched_at={snap['fetched_at']}")
    if missing:
        _say(f"  OUTAGE: no complete snapshot of {', '.join(missing)}; nothing depending on it was pushed (exit 3)")
    _say("")
    for name in ("findings.csv", "corrections.csv", "report.html", "sandbox_state.json", "summary.json"):
        _say(f"  {out / name}")


def run_up(*, scenario_path: str, port: int = 8080) -> int:
    """Sandbox + `airflow standalone`, connections pointed at the sandbox. Ctrl-C, SIGTERM or SIGHUP stop both."""
    stops: list = []
    try:
        with _signals_stop():
            return _up(scenario_path, port, stops)
    except KeyboardInterrupt:
        return 0
    finally:
        for stop in reversed(stops):
            stop()


def _up(scenario_path: str, port: int, stops: list) -> int:
    airflow_setup.init(quiet=True)
    home = airflow_setup.airflow_home()
    sandbox = SandboxProcess(scenario_path, home, time_scale=0.1)
    stops.append(sandbox.stop)
    sandbox.start()
    conns = _scaled(sandbox.connections, 0.1)
    url = ledger_url()
    sc = scenario.load(scenario_path)
    settings_file = project_home() / "data" / "demo" / "retailer.yaml"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(yaml.safe_dump(sc.raw.get("settings", {}), sort_keys=False))
    # Store the sandbox's connections in Airflow's metadata DB so they show (and can be edited) in the UI.
    conn_file = home / "sandbox-connections.json"
    conn_file.touch(mode=0o600)
    conn_file.write_text(json.dumps({cid: {**c, "extra": json.dumps(c.get("extra") or {})}
                                     for cid, c in {**conns, "omnirecon_ledger": _ledger_conn(url)}.items()}))
    try:
        airflow_setup.run_airflow(["connections", "import", "--overwrite", str(conn_file)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True)
    finally:
        conn_file.unlink(missing_ok=True)
    env = airflow_setup.airflow_env({"OMNIRECON_SETTINGS": str(settings_file),
                                     "AIRFLOW__API__PORT": str(port),
                                     "AIRFLOW__API__BASE_URL": f"http://localhost:{port}"})
    # its own process group (stopped as a whole): the scheduler, api-server and executor workers
    proc = subprocess.Popen([airflow_setup.airflow_bin(), "standalone"], env=env, start_new_session=True)
    stops.append(lambda: _stop_group(proc))
    pw_file = home / "simple_auth_manager_passwords.json.generated"
    for _ in range(300):
        if pw_file.exists() or proc.poll() is not None:
            break
        time.sleep(1)
    login = json.loads(pw_file.read_text()) if pw_file.exists() else {}
    _say(f"\nAirflow UI: http://localhost:{port}   login: " + ", ".join(f"{u} / {p}" for u, p in login.items()))
    _say(f"Sandbox: {sandbox.urls}\nCtrl-C stops Airflow and the sandbox.\n")
    return proc.wait()


class _Stop(KeyboardInterrupt):
    pass


@contextlib.contextmanager
def _signals_stop():
    """SIGTERM/SIGHUP stop `omnirecon up` like Ctrl-C does (Python's default would exit without cleaning up,
    leaving `airflow standalone` serving in its own process group)."""
    def stop(signum, frame):
        raise _Stop(signal.Signals(signum).name)
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the process group proc leads, SIGKILL to whatever of it is left after grace_s; then the same
    for the rest of its process tree (Airflow's task supervisor puts each task in a process group of its own)."""
    import psutil
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()   # reap the leader, so the group empties
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [p for p in tree if p.is_running()]
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, left = psutil.wait_procs(left, timeout=10)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
