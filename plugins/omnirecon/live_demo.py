"""`omnirecon demo --live DURATION`: the living world in real time with omnirecon fully live (world.md, "The live
demo"). It starts, each with this demo's own clean state under <out>/state/: the sandbox on the scenario at time
scale 1; the notification receiver (in-process) with the sandbox's secrets; every platform's subscriptions through
its own API (Amazon's to the sandbox's SQS queue); the SQS consumer; `airflow standalone` (scheduler, triggerer,
dag-processor, api-server) with `omnirecon_live`, `omnirecon_snapshot` and `omnirecon_reconcile` unpaused. After
DURATION (counted from the moment the live DAG is unpaused, after the first snapshot) it stops everything and
writes the files of outputs.md and world.md.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests
import yaml

from omnirecon import airflow_setup
from omnirecon.config import settings_from_dict
from omnirecon.demo import EXIT_OK, EXIT_OUTAGE, _ledger_conn, _scaled, _signals_stop, _stop_group, fresh_state
from omnirecon.errors import ConfigError
from omnirecon.ledger import get_ledger
from omnirecon.sandbox_process import SandboxProcess
from omnirecon_contract import scenario

LIVE_DAGS = ("omnirecon_live", "omnirecon_snapshot", "omnirecon_reconcile")
SQS_QUEUE = "omnirecon-notifications"
HEARTBEAT_S = 15.0
DRAIN_EXTRA_S = 60.0       # + twice the propagation SLA: the longest wait for the runs in flight at the end
_UNITS = {"s": 1, "m": 60, "h": 3600}


def _say(msg: str) -> None:
    print(msg, flush=True)


def parse_duration(text: str) -> float:
    """`90s`, `5m`, `1h`, `1m30s` or plain seconds -> seconds."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ConfigError(f"--live {text!r}: a duration such as 90s, 5m or 1h30m")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--live {text!r}: the duration must be positive")
    return seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_connections(sandbox_connections: dict) -> dict:
    """The sandbox's connections as the live path needs them: real-time pacing, and the secret the NetSuite
    user-event deployment signs with (the receiver checks it; Walmart's is the client secret, Shopify's the app's)."""
    conns = _scaled(sandbox_connections, 1.0)
    if "omnirecon_netsuite" in conns:
        c = conns["omnirecon_netsuite"]
        conns["omnirecon_netsuite"] = {**c, "extra": {**c["extra"], "webhook_secret": secrets.token_urlsafe(24)}}
    return conns


@contextlib.contextmanager
def _environ(extra: dict):
    """This process's environment with `extra` (the connections, read through Airflow's own lookup), restored after."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sqs_queue(amazon: dict):
    """(client, queue url, queue ARN) of the notifications queue on the sandbox's SQS-compatible endpoint."""
    from omnirecon.live.sqs import sqs_client
    x = amazon["extra"]
    client = sqs_client(x["sqs_endpoint"], x["aws_region"], x["aws_access_key_id"], x["aws_secret_access_key"])
    url = client.create_queue(QueueName=SQS_QUEUE)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return client, url, arn


class AirflowApi:
    """The api-server of this demo's `airflow standalone`, through its REST API (JWT from the simple auth manager)."""

    def __init__(self, port: int, proc: subprocess.Popen, log: Path):
        self.base, self.proc, self.log = f"http://127.0.0.1:{port}", proc, log
        self.session = requests.Session()
        self.login: dict = {}

    def wait(self, what: str, ready, timeout_s: float = 600) -> None:
        why = airflow_setup.wait_for_service(what, ready, self.proc, timeout_s)
        if why:
            raise SystemExit(f"omnirecon demo: airflow standalone {why}; see {self.log}")

    def start(self, pw_file: Path) -> None:
        self.wait("the generated admin password", pw_file.exists)
        self.wait("the Airflow API server", lambda: requests.get(f"{self.base}/api/v2/monitor/health", timeout=5).ok)
        self.login = json.loads(pw_file.read_text())
        user, password = next(iter(self.login.items()))
        r = requests.post(f"{self.base}/auth/token", json={"username": user, "password": password}, timeout=30)
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        """One REST call; a 5xx (SQLite metadata busy) is retried a few times."""
        r = None
        for _ in range(5):
            r = self.session.request(method, f"{self.base}/api/v2{path}", timeout=60, **kw)
            if r.status_code < 500:
                return r
            time.sleep(2)
        return r

    def unpause(self, dag_id: str) -> None:
        self.wait(f"{dag_id} to be parsed", lambda: self.call("GET", f"/dags/{dag_id}").ok, 300)
        r = self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        if not r.ok:
            raise SystemExit(f"omnirecon demo: could not unpause {dag_id}: {r.status_code} {r.text[:200]}")

    def active_runs(self, dag_id: str) -> list[str]:
        r = self.call("GET", f"/dags/{dag_id}/dagRuns", params={"state": ["queued", "running"], "limit": 100})
        return [row["dag_run_id"] for row in r.json().get("dag_runs", [])] if r.ok else []

    def finished(self, dag_id: str, run_id: str) -> bool:
        r = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return not r.ok or r.json().get("state") not in ("queued", "running")

    def runs(self, dag_id: str) -> dict:
        """{state: count} of the DAG's runs ({} if the API does not answer)."""
        try:
            r = self.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
            rows = r.json().get("dag_runs", []) if r.ok else []
        except (requests.RequestException, ValueError):
            return {}
        out: dict[str, int] = {}
        for row in rows:
            out[row["state"]] = out.get(row["state"], 0) + 1
        return out


def _world(sandbox_url: str) -> dict:
    try:
        r = requests.get(f"{sandbox_url}/_sandbox/world", timeout=10)
        return r.json() if r.ok else {}
    except (requests.RequestException, ValueError):
        return {}


def _ledger_counts(ledger) -> tuple[int, int]:
    """(notifications in the inbox, from the receiver and the SQS consumer; trigger gaps detected)."""
    from sqlalchemy import func, select
    from omnirecon.ledger import models as m
    with ledger.session() as s:
        return (int(s.scalar(select(func.count(m.Notification.id))) or 0),
                int(s.scalar(select(func.count(m.TriggerDetection.id))) or 0))


def run_live_demo(*, duration: str, scenario_path: str, out_dir: str, mode: str = "apply",
                  port: int | None = None) -> int:
    t0 = time.monotonic()
    duration_s = parse_duration(duration)
    sc = scenario.load(scenario_path)
    settings = settings_from_dict(sc.settings, source=f"{scenario_path}: settings")
    if mode not in ("apply", "dry-run"):
        raise ConfigError(f"--mode {mode!r}: apply or dry-run")
    if not any(k in sc.raw for k in ("integration", "events", "demand", "notifications")):
        _say(f"note: {scenario_path} has no world blocks (world.md): nothing will change while it runs")
    out = Path(out_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for name in ("trigger_chain.json", "detections.csv", "report.html", "findings.csv", "corrections.csv",
                 "summary.json", "sandbox_state.json"):
        (out / name).unlink(missing_ok=True)     # nothing left over from an earlier demo in the same folder
    airflow_setup.init(quiet=True)
    state = fresh_state(out / "state")
    settings_file = state.dir / "retailer.yaml"
    settings_file.write_text(yaml.safe_dump(sc.raw.get("settings", {}), sort_keys=False))
    ledger = get_ledger(state.ledger_url)
    _say(f"omnirecon demo --live {duration}: scenario {sc.name!r} ({', '.join(sc.systems)}), mode {mode}")
    _say(f"[state] a clean ledger {state.ledger_url} and Airflow metadata {state.airflow_url} for this run")

    stops: list = []
    started = None
    try:
        with _signals_stop():
            started = _live(scenario_path, state, ledger, settings_file, out, mode, port, duration_s,
                            DRAIN_EXTRA_S + 2 * float(settings.get("propagation_sla_seconds", 60)), stops)
    except KeyboardInterrupt:
        _say("\nstopping early (interrupted)")
    finally:
        _say("[stop] Airflow, the SQS consumer, the receiver, then the sandbox (it writes sandbox_state.json)")
        for stop in reversed(stops):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - the next component must still be stopped
                _say(f"      could not stop cleanly: {type(e).__name__}: {e}")
    return _write_outputs(ledger, settings, sc, out, started or datetime.now(timezone.utc), round(time.monotonic() - t0, 1))


def _live(scenario_path: str, state, ledger, settings_file: Path, out: Path, mode: str, port: int | None,
          duration_s: float, drain_s: float, stops: list):
    from omnirecon.live.inbox import Inbox
    from omnirecon.live.receiver import Receiver
    from omnirecon.live.sources import sources_from_connections
    from omnirecon.live.sqs import SqsConsumer
    from omnirecon.live.subscriptions import ensure_all

    sb = SandboxProcess(scenario_path, state.dir, time_scale=1.0, state_out=out / "sandbox_state.json")
    stops.append(sb.stop)
    sb.start()
    _say(f"[sandbox] real time, serving {', '.join(f'{k} {v}' for k, v in sb.urls.items())}")
    conns = live_connections(sb.connections)
    conn_env = airflow_setup.connection_env({**conns, "omnirecon_ledger": _ledger_conn(state.ledger_url)})
    inbox = Inbox(ledger)
    with _environ(conn_env):   # the receiver and the subscriptions read the connections as Airflow does
        receiver = Receiver(inbox, sources_from_connections(), host="127.0.0.1", port=0).start()
        stops.append(receiver.stop)
        _say(f"[receiver] {receiver.url}/notifications/<source>  sources: {', '.join(sorted(receiver.sources))}")
        arn = None
        if "omnirecon_amazon" in conns:
            client, queue_url, arn = _sqs_queue(conns["omnirecon_amazon"])
            consumer = SqsConsumer(client, queue_url, inbox, wait_s=2)
            thread = threading.Thread(target=consumer.run, name="sqs-consumer", daemon=True)
            thread.start()
            stops.append(lambda: (consumer.stop_flag.set(), thread.join(timeout=30)))
            _say(f"[sqs] consuming {queue_url} into the inbox")
        made: dict[str, int] = {}
        for system, _topic, _id, action in ensure_all(receiver.url, arn):
            made[system] = made.get(system, 0) + 1
        _say("[subscriptions] " + ", ".join(f"{s} {n}" for s, n in sorted(made.items())))

    port = port or free_port()
    env = airflow_setup.airflow_env({
        **conn_env,
        "OMNIRECON_LEDGER_URL": state.ledger_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": state.airflow_url,
        "OMNIRECON_SETTINGS": str(settings_file),
        "OMNIRECON_REPORTS_DIR": str(out),
        "OMNIRECON_MODE": mode,
        # the live path re-subscribes a platform gone silent
        "OMNIRECON_RECEIVER_URL": receiver.url,
        **({"OMNIRECON_SQS_QUEUE_ARN": arn} if arn else {}),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        # its own ports and logs, so this Airflow never meets another one on this machine
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(out / "logs" / "airflow"),
    })
    log_path = out / "logs" / "airflow-standalone.log"
    _say(f"[airflow] standalone: scheduler, triggerer, dag-processor, api-server (log: {log_path})")
    with open(log_path, "wb") as log:
        # its own process group (stopped as a whole): the scheduler, api-server, triggerer and executor workers
        proc = subprocess.Popen([airflow_setup.airflow_bin(), "standalone"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stops.append(lambda: _stop_group(proc))
    api = AirflowApi(port, proc, log_path)
    api.start(airflow_setup.airflow_home() / "simple_auth_manager_passwords.json.generated")
    _say(f"\nAirflow UI: http://localhost:{port}   login: " + ", ".join(f"{u} / {p}" for u, p in api.login.items()))
    # unpausing starts each scheduled DAG's latest slot at once (catchup off). The live path reads the latest
    # snapshots (Shopify's item ids, the ERP's levels, the write-back refs), which a production ledger always has:
    # the first snapshot lands before the live DAG starts; notifications meanwhile wait in the inbox.
    for dag_id in ("omnirecon_snapshot", "omnirecon_reconcile"):
        api.unpause(dag_id)
    _baseline(api)
    api.unpause("omnirecon_live")
    _say(f"unpaused {', '.join(LIVE_DAGS)}; live for {duration_s:g}s (Ctrl-C ends early and still writes the outputs)\n")

    started = datetime.now(timezone.utc)
    deadline = time.monotonic() + duration_s
    sandbox_url = next(iter(sb.urls.values()))
    next_beat = time.monotonic() + HEARTBEAT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"omnirecon demo: airflow standalone exited ({proc.returncode}); see {log_path}")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= next_beat or time.monotonic() >= deadline:
            next_beat = time.monotonic() + HEARTBEAT_S
            _heartbeat(api, ledger, sandbox_url, started)
    _drain(api, drain_s)
    return started


DRAINED = ("omnirecon_live", "omnirecon_reconcile")
BASELINE_MAX_S = 300.0


def _baseline(api: AirflowApi, timeout_s: float = BASELINE_MAX_S) -> None:
    """Wait for the first scheduled snapshot run to end (at most timeout_s)."""
    _say(f"[baseline] the first snapshot of every system before going live (at most {timeout_s:.0f}s)")
    t0 = time.monotonic()
    runs: dict = {}
    while time.monotonic() - t0 < timeout_s and api.proc.poll() is None:
        runs = api.runs("omnirecon_snapshot")
        if runs.get("success") or (runs and not runs.get("queued") and not runs.get("running")):
            break
        time.sleep(3)
    state = "success" if runs.get("success") else (", ".join(sorted(runs)) or "not started")
    _say(f"      omnirecon_snapshot {state} after {time.monotonic() - t0:.0f}s")


def _drain(api: AirflowApi, timeout_s: float) -> None:
    """Let the live and reconcile runs in flight at the end of the period finish (they persist what they found,
    push what they planned and mark their notifications processed), for at most timeout_s in all. Runs started
    meanwhile are left to the stop: their notifications stay unprocessed in the ledger, nothing is lost."""
    try:
        pending = [(d, r) for d in DRAINED for r in api.active_runs(d)]
    except requests.RequestException:
        return
    if not pending:
        return
    _say(f"[drain] waiting for {len(pending)} run(s) in flight to finish (at most {timeout_s:.0f}s): "
         + ", ".join(f"{d} {r}" for d, r in pending))
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline and api.proc.poll() is None:
        time.sleep(3)
        try:
            pending = [(d, r) for d, r in pending if not api.finished(d, r)]
        except requests.RequestException:
            pass
    if pending:
        _say(f"      still running after {timeout_s:.0f}s, stopped: " + ", ".join(f"{d} {r}" for d, r in pending))


def _heartbeat(api: AirflowApi, ledger, sandbox_url: str, started: datetime) -> None:
    live = api.runs("omnirecon_live")
    rec = api.runs("omnirecon_reconcile")
    world = _world(sandbox_url)
    oversold = sum(int(o.get("units", 0)) for o in world.get("oversells", []))
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    notifications, detections = _ledger_counts(ledger)
    _say(f"  [{elapsed:5.0f}s] live runs {sum(live.values())} ({', '.join(f'{k} {v}' for k, v in sorted(live.items())) or '-'})"
         f", reconcile runs {sum(rec.values())}, notifications {notifications}"
         f", detections {detections}, oversold units {oversold}")


# -- the outputs (outputs.md and world.md), over every run of the live period ------------------------------------
def _runs(ledger) -> list:
    """Every run of this demo (its ledger is its own), oldest first."""
    from sqlalchemy import select
    from omnirecon.ledger import models as m
    with ledger.session() as s:
        return list(s.scalars(select(m.Run).order_by(m.Run.started_at, m.Run.id)))


def _latest(runs: list, kind: str, status: str | None = None):
    rows = [r for r in runs if r.kind == kind and (status is None or r.status == status)]
    return rows[-1] if rows else None


def _not_snapshotted(ledger, systems) -> tuple[list[str], bool]:
    """(systems that could not be snapshotted: an attempt failed or was unusable and no snapshot of that kind
    completed in the period, whether any snapshot finished at all). A snapshot cut short by the end of the period
    is no outage."""
    from sqlalchemy import select
    from omnirecon.ledger import models as m
    with ledger.session() as s:
        rows = s.execute(select(m.Snapshot.system, m.Snapshot.kind, m.Snapshot.status)).all()
    complete = {(sy, k) for sy, k, st in rows if st == "complete"}
    bad = {sy for sy, k, st in rows if st in ("failed", "unusable") and (sy, k) not in complete}
    return [s for s in systems if s in bad], any(st != "running" for _, _, st in rows)


def _write_outputs(ledger, settings, sc, out: Path, started: datetime, duration_s: float) -> int:
    from omnirecon.model.finding import CORRECTIONS_COLUMNS, FINDINGS_COLUMNS
    from omnirecon.report import exports
    from omnirecon.report.daily import produce_daily_report

    state_file = out / "sandbox_state.json"
    if not state_file.exists():
        raise SystemExit(f"omnirecon demo: the sandbox did not write {state_file}")
    world = json.loads(state_file.read_text()).get("world")
    runs = _runs(ledger)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    # the daily report as the report DAG writes it (it also writes a one-run findings.csv, replaced below)
    produce_daily_report(ledger, settings, report_date=datetime.now(timezone.utc).date(), out_dir=out, send=False)
    findings = [row for r in runs for row in exports.findings_rows(ledger, r.id)]
    corrections = [row for r in runs for row in exports.corrections_rows(ledger, r.id)]
    (out / "findings.csv").write_bytes(exports.csv_bytes(findings, FINDINGS_COLUMNS))
    (out / "corrections.csv").write_bytes(exports.csv_bytes(corrections, CORRECTIONS_COLUMNS))
    chain_file = out / "trigger_chain.json"
    if chain_file.exists():   # as the last live run learned it
        chain = json.loads(chain_file.read_text())
    else:                     # no live run finished: the map from every notification of the period
        from omnirecon.live.chain import ChainMonitor
        monitor = ChainMonitor(settings, ledger=ledger)
        monitor.tick()
        chain = exports.write_trigger_chain_json(monitor.chain(), chain_file)
    detections = exports.write_detections_csv(ledger, out / "detections.csv")
    main = _latest(runs, "reconcile", "success") or _latest(runs, "reconcile") or _latest(runs, "live")
    summary = exports.build_summary(ledger, run_id=main.id if main else "", duration_s=duration_s,
                                    trigger_chain=chain, detections=detections)
    counts = {}
    for rows, key, col in ((findings, "findings", "check"), (corrections, "corrections", "status")):
        c: dict[str, int] = {}
        for row in rows:
            c[row[col]] = c.get(row[col], 0) + 1
        counts[key] = dict(sorted(c.items()))
    summary.update(counts)                        # over every run of the period, as the CSV files
    summary["runs"] = {kind: sum(r.kind == kind for r in runs) for kind in sorted({r.kind for r in runs})}
    summary["live"] = {"from": started.isoformat(), "oversells": (world or {}).get("oversells", [])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    missing, snapshotted = _not_snapshotted(ledger, sc.systems)
    _say("")
    _say(f"live period: {summary['runs']} runs; trigger chain {summary['trigger_chain']}, {detections} detection(s), "
         f"oversold units {sum(int(o.get('units', 0)) for o in summary['live']['oversells'])}")
    _say("  findings:    " + (", ".join(f"{k} {v}" for k, v in counts["findings"].items()) or "none"))
    _say("  corrections: " + (", ".join(f"{k} {v}" for k, v in counts["corrections"].items()) or "none"))
    if not snapshotted:
        _say("  no snapshot finished during the live period")
    if world is None:
        _say("  note: the scenario has no world, sandbox_state.json has no world block")
    if missing:
        _say(f"  OUTAGE: no complete snapshot of {', '.join(missing)}; nothing depending on it was pushed (exit 3)")
    _say("")
    for name in ("findings.csv", "corrections.csv", "report.html", "sandbox_state.json", "summary.json",
                 "trigger_chain.json", "detections.csv"):
        _say(f"  {out / name}")
    return EXIT_OUTAGE if missing else EXIT_OK
