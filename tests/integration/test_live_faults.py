"""Faults on the live path (issue 15): the receiver, the triggerer and a worker killed mid-flow lose no
notification and duplicate no correction; the receiver, fuzzed, accepts nothing unsigned and stays up.

* receiver: a real `omnirecon receiver` process takes the sandbox's own signed deliveries (Shopify, Walmart, the
  NetSuite SuiteScript) from a living world on the manual clock, and is SIGKILLed mid-stream three times while
  forged deliveries are mixed in. The platforms retry what got no 2xx (Shopify, Walmart; NetSuite through the
  SuiteScript's outbox and retry script); after the restarts every notification is in the ledger exactly once (by
  the platforms' event ids) and nothing forged is.
* NetSuite outage: the receiver down for minutes while NetSuite changes happen; the SuiteScript's outbox keeps
  every failed post and the retry runs (backoff, the 15-minute schedule, the flush once a post gets through again)
  deliver each one re-signed; one the receiver stored but never answered (a timeout) is stored once.
* fuzz: bad signatures, malformed JSON, oversized and replayed bodies, wrong content types, missing headers,
  random bytes on random paths, raw non-HTTP bytes: every request is answered, nothing unsigned is stored, the
  process stays up and its counts add up (in = stored + duplicate + rejected).
* worker: the live run (live_cycle, the `watch` task) SIGKILLed after it took the inbox (mid-watch, and after it
  persisted its findings but before it marked them processed), and the push SIGKILLed with its write in flight
  (the channel applied it, the worker never heard): the re-runs take every notification once, find the gap once,
  and the channel's write log shows one write for the one correction.
* triggerer: a real `airflow triggerer` runs the omnirecon_live DAG's AssetWatcher(InboxTrigger) (registered by
  `airflow dags reserialize` in a metadata DB of its own) and is SIGKILLed with its whole process group after it
  rang for a notification no run took yet; notifications land while it is down; the restarted triggerer takes the
  trigger over and rings for all of them, and the live runs the rings stand for take each notification once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from omnirecon import airflow_setup
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.live.inbox import Inbox
from omnirecon.live.receiver import MAX_BODY_BYTES, Receiver
from omnirecon.adapters.erp.notifications import NetSuiteDeployment, NetSuiteSource
from omnirecon.adapters.shopify.notifications import ShopifySubscriptions
from omnirecon.adapters.walmart.notifications import WalmartSubscriptions
from omnirecon.runner import hooks_from_connections
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox
from tests.support.chain_world import listening
from tests.support.polling import free_port, wait_for
from tests.support.world import world_doc

pytestmark = pytest.mark.slow
ERP_SECRET = "erp-webhook-secret-0123456789"


# -- a real `omnirecon receiver` process --------------------------------------------------------------------------
class ReceiverProcess:
    """`omnirecon receiver` on a fixed port (the platforms' subscriptions name it), restartable after a SIGKILL."""

    def __init__(self, ledger_url: str, connections: dict, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, OMNIRECON_LEDGER_URL=ledger_url,
                        **airflow_setup.connection_env(connections))
        self.log_path, self.proc, self.starts = log_path, None, 0

    def start(self) -> "ReceiverProcess":
        self.starts += 1
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "omnirecon.cli", "receiver", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self.health, 90, "the receiver answering /healthz", proc=self.proc)
        return self

    def health(self) -> dict | None:
        try:
            return requests.get(self.url + "/healthz", timeout=2).json()
        except requests.RequestException:
            return None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(60)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def shopify_headers(raw: bytes, secret: str, webhook_id: str, topic: str = "inventory_levels/update") -> dict:
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode(),
            "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Triggered-At": "2026-12-01T10:00:00Z", "Content-Type": "application/json"}


def walmart_headers(raw: bytes, secret: str) -> dict:
    return {"Authorization": base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode(),
            "Content-Type": "application/json"}


def netsuite_headers(raw: bytes, secret: str, stamp: int | None = None) -> dict:
    ts = str(int(time.time()) if stamp is None else stamp)
    sig = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"X-Omnirecon-Timestamp": ts, "X-Omnirecon-Signature": sig, "Content-Type": "application/json"}


def inbox(ledger) -> list[m.Notification]:
    with ledger.session() as s:
        return list(s.scalars(select(m.Notification).order_by(m.Notification.id)))


def inbox_count(ledger) -> int:
    with ledger.session() as s:
        return int(s.scalar(select(func.count()).select_from(m.Notification)))


# -- receiver: SIGKILLed mid-stream --------------------------------------------------------------------------------
STREAM_S = 45                 # clock seconds of changes (the SuiteScript's timestamps stay within the 5-min window)
KILL_AT = (10, 22, 34)        # the receiver is SIGKILLed right after these seconds' deliveries start landing
SKUS = 6


def stream_events() -> list[dict]:
    """Every clock second: an ERP adjustment (a SuiteScript post) and a Shopify sale (orders/create and an
    inventory_levels/update); every third second a Walmart order (PO_CREATED)."""
    out = []
    for t in range(1, STREAM_S + 1):
        sku = f"SKU-{t % SKUS:03d}"
        out.append({"at": f"+{t}s", "system": "erp", "kind": "adjust", "sku": sku, "location": "WH-EAST",
                    "delta": -(1 + t % 3)})
        out.append({"at": f"+{t}s", "system": "shopify", "kind": "order", "sku": sku, "quantity": 1})
        if t % 3 == 0:
            out.append({"at": f"+{t}s", "system": "walmart", "kind": "order", "sku": sku, "quantity": 1})
    return out


class DeliveryLog:
    """Every delivery attempt the sandbox's platforms make: (system, the platform's event id, answered 2xx)."""

    def __init__(self, outbox):
        self.outbox, self.attempts, self.lock = outbox, [], threading.Lock()
        post = outbox.post

        def recording_post(d):
            result = post(d)
            with self.lock:
                self.attempts.append((d.system, self.event_key(d), result[0]))
            return result
        outbox.post = recording_post

    @staticmethod
    def event_key(d) -> str:
        if d.system == "shopify":
            return d.headers["X-Shopify-Webhook-Id"]
        if d.system == "walmart":
            return json.loads(d.body)["source"]["eventId"]
        return json.loads(d.body)["eventId"]     # the SuiteScript's message, the same body on every retry

    def keys(self, system: str, ok: bool | None = None) -> set[str]:
        with self.lock:
            return {k for s, k, good in self.attempts if s == system and (ok is None or good == ok)}

    def answered(self, system: str) -> int:
        with self.lock:
            return sum(1 for s, _, good in self.attempts if s == system and good)

    def failed(self, system: str) -> int:
        with self.lock:
            return sum(1 for s, _, good in self.attempts if s == system and not good)

    def settled(self, clock) -> bool:
        """Nothing due and unsent, nothing in flight (retries scheduled later may wait)."""
        ob = self.outbox
        with ob._cond:
            return ob.inflight == 0 and not (ob._heap and ob._heap[0][0] <= clock.monotonic())


class Forger(threading.Thread):
    """Delivers forged notifications while the stream runs: wrong secrets, no signature, a real body under a
    wrong HMAC. Each carries an id starting with `forged`: none may ever be stored."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop_flag, self.sent, self.answers = url, threading.Event(), 0, []

    def run(self) -> None:
        rng = random.Random(3)
        while not self.stop_flag.is_set():
            n = self.sent
            raw = json.dumps({"inventory_item_id": n, "location_id": 1, "available": 999}).encode()
            kind = n % 4
            if kind == 0:
                path, headers = "shopify", shopify_headers(raw, "not-the-secret", f"forged-{n}")
            elif kind == 1:
                path, headers = "shopify", {**shopify_headers(raw, "x", f"forged-{n}"), "X-Shopify-Hmac-Sha256": ""}
            elif kind == 2:
                raw = json.dumps({"source": {"eventType": "PO_CREATED", "eventId": f"forged-{n}",
                                             "eventTime": "2026-12-01T10:00:00Z"}, "payload": {}}).encode()
                path, headers = "walmart", walmart_headers(raw, "not-the-secret")
            else:
                raw = json.dumps({"recordType": "inventoryadjustment", "eventId": f"forged-{n}", "id": n}).encode()
                path, headers = "erp", netsuite_headers(raw, "not-the-secret-either-0000")
            try:
                r = requests.post(f"{self.url}/notifications/{path}", data=raw, headers=headers, timeout=10)
                self.answers.append(r.status_code)
            except requests.RequestException:
                self.answers.append(None)          # the receiver was down at that moment
            self.sent += 1
            self.stop_flag.wait(rng.uniform(0.005, 0.03))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_ledger(request, tmp_path):
    """The ledger on SQLite (a file) and on PostgreSQL (production's: a killed receiver's open transaction is
    rolled back by the server)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    ledger = Ledger(url)
    ledger.migrate()
    yield ledger
    ledger.engine.dispose()


def test_a_receiver_killed_mid_stream_loses_no_notification_and_stores_none_twice(any_ledger, tmp_path):
    ledger = any_ledger
    doc = world_doc(skus=SKUS, on_hand=500, events=stream_events(),   # the platforms also send duplicates
                    notifications={"shopify": {}, "walmart": {}, "erp": {}, "defects": [
                        {"system": "shopify", "kind": "duplicate", "fraction": 0.2, "seed": 2},
                        {"system": "walmart", "kind": "duplicate", "fraction": 0.3, "seed": 3}]})
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    with Sandbox(scenario, clock=clock, options={"notify_timeout": 2.0}) as sb:
        conns = sb.connections()
        conns["omnirecon_netsuite"]["extra"] = {**conns["omnirecon_netsuite"]["extra"], "webhook_secret": ERP_SECRET}
        rx = ReceiverProcess(ledger.url, conns, tmp_path / "receiver.log").start()
        deliveries = DeliveryLog(sb.notifications.outbox)
        forger = Forger(rx.url)
        try:
            hooks = hooks_from_connections(conns, time_scale=0.01)
            ShopifySubscriptions(hooks["shopify"]).ensure(rx.url + "/notifications/shopify",
                                                          topics=("INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE"))
            WalmartSubscriptions(hooks["walmart"], conns["omnirecon_walmart"]["password"]).ensure(
                rx.url + "/notifications/walmart", topics=("PO_CREATED",))
            NetSuiteDeployment(hooks["erp"], ERP_SECRET).ensure(rx.url + "/notifications/erp")
            forger.start()

            def second() -> None:
                sb.world.advance(1.0)
                wait_for(lambda: deliveries.settled(clock), 30, "this second's deliveries")

            for t in range(1, STREAM_S + 1):
                if t in KILL_AT:
                    before = inbox_count(ledger)
                    sb.world.advance(1.0)               # this second's burst goes out ...
                    wait_for(lambda: inbox_count(ledger) > before, 30, "the burst landing")
                    rx.kill()                           # ... and the receiver dies in the middle of it
                    wait_for(lambda: deliveries.settled(clock), 30, "the burst failing")
                    second()                            # a second of changes while it is down: all refused
                    rx.start()
                else:
                    second()
            for _ in range(STREAM_S + 120):             # the platforms' retries (first after 10 s / 30 s / 5 s)
                if all(not deliveries.keys(src, ok=False) - deliveries.keys(src, ok=True)
                       for src in ("shopify", "walmart", "erp")):
                    break
                second()
        finally:
            forger.stop_flag.set()
            forger.join(30)
            code = rx.stop()
        assert code == 0, rx.log()[-3000:]
        script = sb.notifications.platforms["erp"]
        script_errors, outbox = len(script.errors), script.view()["outbox"]

    rows = inbox(ledger)
    stored = {src: [n.event_id for n in rows if n.source == src] for src in ("shopify", "walmart", "erp")}
    for src in ("shopify", "walmart", "erp"):
        sent, ok = deliveries.keys(src), deliveries.keys(src, ok=True)
        assert deliveries.failed(src) > 0, f"the kills never hit a {src} delivery"
        if src != "erp":                         # the SuiteScript sends no duplicates of its own
            assert deliveries.answered(src) > len(ok), f"no {src} duplicate was delivered"
        assert sent == ok, f"{src}: the platform gave up on {len(sent - ok)} notification(s)"
        assert sorted(stored[src]) == sorted(sent), src        # every one, each exactly once
    # every failed SuiteScript post is in its execution log and went through the outbox, now empty
    assert script_errors == deliveries.failed("erp") and outbox == {"queued": 0, "failed": 0}
    assert all(n.quarantined is None for n in rows)
    assert not [n for n in rows if n.event_id.startswith("forged") or "forged" in n.body]
    assert forger.sent >= 50 and set(forger.answers) <= {401, None}, set(forger.answers)
    assert rx.starts == len(KILL_AT) + 1


# -- NetSuite: the receiver down for minutes ----------------------------------------------------------------------
NS_OUTAGE_SECRET = "ns-outage-secret-0123456789"


class SlowToAnswer(Receiver):
    """A receiver that stores a delivery, then answers the first `slow` ERP ones after the sender gave up."""

    def __init__(self, *a, slow: int = 0, delay_s: float = 0.0, **kw):
        super().__init__(*a, **kw)
        self.slow, self.delay_s = slow, delay_s

    def handle(self, path, raw, headers):
        answer = super().handle(path, raw, headers)
        if path.endswith("/erp") and self.slow > 0:
            self.slow -= 1
            time.sleep(self.delay_s)
        return answer


def test_netsuite_notifications_survive_a_receiver_outage_and_are_stored_exactly_once(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    events = [{"at": f"+{t}s", "system": "erp", "kind": "adjust", "sku": f"SKU-{t % 4:03d}", "location": "WH-EAST",
               "delta": -1} for t in list(range(1, 61)) + [1000, 1001, 1010, 1011]]
    doc = world_doc(skus=4, on_hand=500, events=events, notifications={"erp": {}})
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    notify_timeout = 2.0
    with Sandbox(scenario, clock=clock, options={"notify_timeout": notify_timeout}) as sb:
        conns = sb.connections()
        hooks = hooks_from_connections(conns, time_scale=0.01)
        script = sb.notifications.platforms["erp"]
        deliveries = DeliveryLog(sb.notifications.outbox)
        sources = {"erp": NetSuiteSource(NS_OUTAGE_SECRET, max_skew=timedelta(hours=1))}   # the clock runs ahead

        def advance(seconds: float, step: float = 1.0) -> None:
            end = clock.monotonic() + seconds
            while clock.monotonic() < end - 1e-9:
                sb.world.advance(min(step, end - clock.monotonic()))
                wait_for(lambda: deliveries.settled(clock), 30, "the deliveries due by now")

        def outbox() -> dict:
            deployment = requests.get(sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon", timeout=10)
            return deployment.json()["outbox"]

        rx = SlowToAnswer(Inbox(ledger), sources).start()
        port = rx.server.server_address[1]
        NetSuiteDeployment(hooks["erp"], NS_OUTAGE_SECRET).ensure(rx.url + "/notifications/erp")
        try:
            advance(10)                                   # up: 10 changes stored as they happen
            assert inbox_count(ledger) == 10       # (a cold first store may outlast the timeout: retried below)
            rx.stop()                                     # down for ~15 minutes; changes keep coming for 50 s
            advance(60)
            down = outbox()
            assert down["queued"] >= 50 and down["failed"] == 0 and inbox_count(ledger) == 10
            advance(120, step=5.0)                        # retries back off (1, 2 ... minutes); all refused
            attempts = requests.get(sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon/outbox",
                                    timeout=10).json()["queued"]
            assert len(attempts) >= 50 and max(a["attempts"] for a in attempts) >= 2
            assert all(a["lastError"] == "ConnectionRefusedError" for a in attempts)
            # back, the first ERP answer held past the sender's timeout: stored, though NetSuite saw a failure
            rx = SlowToAnswer(Inbox(ledger), sources, port=port, slow=1, delay_s=notify_timeout + 1.0).start()
            advance(900 - clock.monotonic(), step=60.0)   # no new change: the scheduled run (every 15 min) takes them
            wait_for(lambda: outbox()["queued"] <= 1, 30, "the scheduled run's deliveries")
            advance(1030 - clock.monotonic())             # new changes; the one not answered is flushed again
            wait_for(lambda: outbox() == {"queued": 0, "failed": 0}, 30, "the outbox emptied")
        finally:
            rx.stop()
        resent_after_timeout = sum(r["duplicates"] for r in sb.notifications.counters() if r["system"] == "erp")
    assert resent_after_timeout >= 1                  # a message the receiver had stored was posted again
    rows = [n for n in inbox(ledger) if n.source == "erp"]
    sent = deliveries.keys("erp")
    assert len(sent) == 64 and deliveries.keys("erp", ok=True) == sent       # every message answered 2xx at last
    assert sorted(n.event_id for n in rows) == sorted(sent)                  # each stored exactly once
    assert {json.loads(n.body)["eventId"] for n in rows} == sent
    assert deliveries.failed("erp") > 50                                     # they were retried, some more than once
    assert script.runs >= 3 and not script.outbox


# -- receiver: fuzzed -------------------------------------------------------------------------------------------
FUZZ_SHOP, FUZZ_WM = "fuzz-shopify-secret", "fuzz-walmart-secret"
FUZZ_CONNECTIONS = {"omnirecon_shopify": {"conn_type": "http", "extra": {"client_secret": FUZZ_SHOP}},
                    "omnirecon_walmart": {"conn_type": "http", "password": FUZZ_WM},
                    "omnirecon_netsuite": {"conn_type": "http", "extra": {"webhook_secret": ERP_SECRET}}}


def raw_request(port: int, data: bytes, read: bool = True) -> bytes:
    """Bytes on a socket as they are (no HTTP client tidying them) -> whatever the receiver answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return b""
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def status_of(answer: bytes) -> int | None:
    """The status of an answer; a request line without a version gets an HTTP/0.9 answer: the error page alone."""
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer) or re.search(rb"Error code: (\d{3})", answer)
    return int(found.group(1)) if found else None


def test_a_fuzzed_receiver_accepts_nothing_unsigned_answers_everything_and_stays_up(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    rx = ReceiverProcess(ledger.url, FUZZ_CONNECTIONS, tmp_path / "receiver.log").start()
    url = rx.url + "/notifications/"
    posts = 0

    def post(path: str, raw: bytes, headers: dict, redeliver: bool = False) -> int:
        """One delivery; `redeliver`: as the platforms do after a 503 (the ledger could not take it within the
        answer's deadline: on a loaded machine, the receiver's first commits), up to 5 more times."""
        nonlocal posts
        for attempt in range(6 if redeliver else 1):
            posts += 1
            status = requests.post(url + path, data=raw, headers=headers, timeout=10).status_code
            if status != 503:
                break
            time.sleep(0.5 * 2 ** attempt)
        return status

    try:
        shop = json.dumps({"inventory_item_id": 1, "location_id": 2, "available": 3}).encode()
        wm = json.dumps({"source": {"eventType": "PO_CREATED", "eventId": "wm-1", "eventTime": "2026-12-01T10:00:00Z"},
                         "payload": {"purchaseOrderId": "1"}}).encode()
        ns = json.dumps({"recordType": "inventoryadjustment", "id": 7, "type": "create",
                         "timestamp": "2026-12-01T10:00:00Z", "items": []}).encode()
        old = int(time.time()) - 3600
        valid_ns = netsuite_headers(ns, ERP_SECRET)
        cases = [   # (what, path, body, headers, status, stored)
            ("signed", "shopify", shop, shopify_headers(shop, FUZZ_SHOP, "wh-1"), 200, True),
            ("replayed (same webhook id)", "shopify", shop, shopify_headers(shop, FUZZ_SHOP, "wh-1"), 200, False),
            ("another app's secret", "shopify", shop, shopify_headers(shop, "another-app", "wh-2"), 401, False),
            ("HMAC of another body", "shopify", shop + b" ", shopify_headers(shop, FUZZ_SHOP, "wh-3"), 401, False),
            ("no HMAC header", "shopify", shop,
             {k: v for k, v in shopify_headers(shop, FUZZ_SHOP, "wh-4").items() if "Hmac" not in k}, 401, False),
            ("empty HMAC", "shopify", shop, {**shopify_headers(shop, FUZZ_SHOP, "wh-5"), "X-Shopify-Hmac-Sha256": ""},
             401, False),
            ("non-ASCII HMAC", "shopify", shop,
             {**shopify_headers(shop, FUZZ_SHOP, "wh-6"), "X-Shopify-Hmac-Sha256": "\u00ff\u00fe=="}, 401, False),
            ("signed, no topic", "shopify", shop,
             {k: v for k, v in shopify_headers(shop, FUZZ_SHOP, "wh-7").items() if k != "X-Shopify-Topic"}, 400, False),
            ("signed, not JSON", "shopify", b"{nope", shopify_headers(b"{nope", FUZZ_SHOP, "wh-8"), 400, False),
            ("signed, a JSON array", "shopify", b"[1]", shopify_headers(b"[1]", FUZZ_SHOP, "wh-9"), 400, False),
            ("signed, not UTF-8", "shopify", b"\xff\xfe", shopify_headers(b"\xff\xfe", FUZZ_SHOP, "wh-10"), 400, False),
            ("text/plain, bad HMAC", "shopify", shop,
             {**shopify_headers(shop, "x", "wh-11"), "Content-Type": "text/plain"}, 401, False),
            ("text/plain, signed", "shopify", shop,
             {**shopify_headers(shop, FUZZ_SHOP, "wh-12"), "Content-Type": "text/plain"}, 200, True),
            ("walmart signed", "walmart", wm, walmart_headers(wm, FUZZ_WM), 200, True),
            ("walmart replayed", "walmart", wm, walmart_headers(wm, FUZZ_WM), 200, False),
            ("walmart wrong secret", "walmart", wm, walmart_headers(wm, "nope"), 401, False),
            ("walmart basic auth instead of HMAC", "walmart", wm,
             {"Authorization": "Basic " + base64.b64encode(b"user:" + FUZZ_WM.encode()).decode()}, 401, False),
            ("walmart non-ASCII auth", "walmart", wm, {"Authorization": "\u00e9t\u00e9"}, 401, False),
            ("walmart signed, no eventId", "walmart", b'{"source": {"eventType": "PO_CREATED"}}',
             walmart_headers(b'{"source": {"eventType": "PO_CREATED"}}', FUZZ_WM), 400, False),
            ("netsuite signed", "erp", ns, valid_ns, 200, True),
            ("netsuite replayed as sent", "erp", ns, valid_ns, 200, False),
            ("netsuite replayed an hour later", "erp", ns, netsuite_headers(ns, ERP_SECRET, old), 401, False),
            ("netsuite wrong secret", "erp", ns, netsuite_headers(ns, "x" * 20), 401, False),
            ("netsuite absurd timestamp, signed", "erp", ns, netsuite_headers(ns, ERP_SECRET, 10 ** 20), 401, False),
            ("netsuite non-ASCII signature", "erp", ns, {**valid_ns, "X-Omnirecon-Signature": "sha256=\u00ff"}, 401,
             False),
            ("netsuite no timestamp", "erp", ns, {k: v for k, v in valid_ns.items() if "Timestamp" not in k}, 401,
             False),
            ("no such source", "amazon", shop, shopify_headers(shop, FUZZ_SHOP, "wh-13"), 404, False),
            ("no source at all", "", shop, shopify_headers(shop, FUZZ_SHOP, "wh-14"), 404, False),
            ("oversized", "shopify", b"{" + b" " * MAX_BODY_BYTES + b"}",
             shopify_headers(b"{}", FUZZ_SHOP, "wh-15"), 413, False),
        ]
        got = [(what, post(path, raw, headers, redeliver=status == 200)) for what, path, raw, headers, status, _ in cases]
        assert got == [(what, status) for what, _, _, _, status, _ in cases]

        # what no HTTP client would send
        head = f"POST /notifications/shopify HTTP/1.1\r\nHost: x\r\n"
        raw_cases = [
            (f"{head}Content-Length: {10 ** 12}\r\n\r\n".encode(), 413, True),          # huge, body never sent
            (f"{head}Content-Length: -5\r\n\r\n".encode(), 411, True),
            (f"{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode(), 411, True),
            (f"{head}Content-Length: 100\r\n\r\n{{\"a\": 1".encode(), 401, True),        # truncated, then closed
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)), 400, False),   # a TLS hello
            (b"GARBAGE\r\n\r\n", 400, False),
            (b"PUT /notifications/shopify HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 501, False),
        ]
        for data, want, counted in raw_cases:
            assert status_of(raw_request(rx.port, data)) == want, data[:60]
            posts += counted
        raw_request(rx.port, b"POST /notifications/erp HTTP/1.1\r\n", read=False)   # a client that went away
        posts += 1                                                 # (answered 411 to nobody: counted too)

        rng = random.Random(11)
        for i in range(150):                                       # random bytes, random headers, random paths
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
            headers = {"X-Shopify-Hmac-Sha256": base64.b64encode(rng.randbytes(32)).decode(),
                       "X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"fuzz-{i}",
                       "Authorization": base64.b64encode(rng.randbytes(32)).decode(),
                       "X-Omnirecon-Timestamp": str(int(time.time())),
                       "X-Omnirecon-Signature": "sha256=" + rng.randbytes(32).hex(),
                       "Content-Type": rng.choice(["application/json", "text/plain", "application/octet-stream"])}
            headers = {k: v for k, v in headers.items() if rng.random() < 0.7}
            status = post(rng.choice(["shopify", "walmart", "erp", "amazon", "", "shopify/x"]), raw, headers)
            assert status in (400, 401, 404), (i, status)

        health = rx.health()
        assert rx.proc.poll() is None and health["ok"] is True
        c = health["counts"]
        rejected = sum(v for k, v in c.items() if k.startswith("rejected:"))
        unavailable = c.get("unavailable", 0)      # 503s redelivered (each then stored or found a duplicate)
        assert c["in"] == posts == c.get("stored", 0) + c.get("duplicate", 0) + rejected + unavailable, c
        assert c.get("stored", 0) + c.get("duplicate", 0) == 7, c    # 4 genuine deliveries and 3 replays, once each
        if not unavailable:
            assert (c["stored"], c["duplicate"]) == (4, 3)
        assert post("shopify", shop, shopify_headers(shop, FUZZ_SHOP, "wh-after"), redeliver=True) == 200   # still taking work
    finally:
        code = rx.stop()
    assert code == 0, rx.log()[-3000:]
    assert sorted((n.source, n.event_id) for n in inbox(ledger) if n.source != "erp") == [
        ("shopify", "wh-1"), ("shopify", "wh-12"), ("shopify", "wh-after"), ("walmart", "wm-1")]
    assert [n.body for n in inbox(ledger) if n.source == "erp"] == [ns.decode()]
    assert FUZZ_SHOP not in rx.log() and ERP_SECRET not in rx.log()


# -- worker: the live run and its push SIGKILLed mid-flow ---------------------------------------------------------
W_SLA = 20
W_START = 120                 # clock seconds the first snapshots may take
W_CHANGE_AT = W_START + 30    # the ERP change the suspended ERP -> Walmart hop never carries
W_HOPS = [{"id": f"erp-{to}", "from": "erp", "to": to, "kind": "inventory", "mechanism": "event", "latency": "2s"}
          for to in ("shopify", "walmart")]
W_EVENTS = [{"at": f"+{t}s", "system": "erp", "kind": "adjust", "sku": "SKU-000", "location": "WH-EAST", "delta": -3}
            for t in (W_START + 5, W_START + 10, W_START + 15, W_CHANGE_AT)]
NS_SECRET = "live-faults-secret-0123"
_SPAWN = multiprocessing.get_context("spawn")     # a clean interpreter: no sandbox threads or locks forked along


def _live_worker(ledger_url: str, conns: dict, settings_doc: dict, run_id: str, at, die_in: str) -> None:
    """Child: the `watch` task's live_cycle on a frozen clock, SIGKILLed at `die_in`: `watch` (its first wait, after
    it took the inbox and read the chain) or `mark` (after it persisted its findings, before it marks the
    notifications processed)."""
    from omnirecon.adapters import get_adapter
    from omnirecon.config import settings_from_dict
    from omnirecon.live import cycle

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)
    if die_in == "mark":
        cycle._mark_processed = die
    settings = settings_from_dict(settings_doc, {"mode": "apply"})
    hooks = hooks_from_connections(conns, time_scale=0.01)
    cycle.live_cycle(Ledger(ledger_url), settings, run_id=run_id, now=lambda: at, sleep=die,
                     reader=get_adapter("walmart").quantity_reader(hooks["walmart"], settings), readable=("walmart",))


def _push_worker(ledger_url: str, conns: dict, settings_doc: dict, batch: dict) -> None:
    """Child: one push task (the sandbox SIGKILLs it once Walmart has applied its write)."""
    from omnirecon.config import settings_from_dict
    from omnirecon.remediation.push import push_batch
    from tests.support.clock import ScaledClock
    hooks = hooks_from_connections(conns, time_scale=0.01)
    push_batch(Ledger(ledger_url), settings_from_dict(settings_doc, {"mode": "apply"}), batch,
               hook_factory=lambda channel: hooks[channel], clock=ScaledClock(0.05))


def _run_child(target, *args) -> int:
    proc = _SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join(180)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"{target.__name__} hung")
    return proc.exitcode


def _unprocessed(ledger) -> int:
    with ledger.session() as s:
        return int(s.scalar(select(func.count()).select_from(m.Notification)
                            .where(m.Notification.processed_at.is_(None))))


def _gaps(ledger, run_id: str) -> list[m.Finding]:
    from omnirecon.model.values import Check
    with ledger.session() as s:
        return list(s.scalars(select(m.Finding).where(m.Finding.run_id == run_id,
                                                      m.Finding.check == Check.TRIGGER_GAP)))


def test_a_live_run_and_its_push_killed_mid_flow_take_every_notification_once_and_write_once(tmp_path):
    from omnirecon.adapters import get_adapter
    from omnirecon.config import settings_from_dict
    from omnirecon.live.cycle import live_cycle
    from omnirecon.remediation.plan import plan_corrections
    from omnirecon.remediation.push import push_batch
    from omnirecon.snapshot import snapshot_system
    from tests.support.clock import ScaledClock

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    doc = world_doc(skus=10, on_hand=50, integration={"hops": W_HOPS, "defects": [
        {"hop": "erp-walmart", "kind": "suspended", "from": f"+{W_START + 20}s"}]},
        events=W_EVENTS, notifications={"shopify": {}, "erp": {}})
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    settings_doc = dict(doc["settings"], propagation_sla_seconds=W_SLA)
    settings = settings_from_dict(settings_doc, {"mode": "apply"})
    with Sandbox(scenario, clock=clock, options={"notify_timeout": 2.0}) as sb:
        conns = sb.connections()
        hooks = hooks_from_connections(conns, time_scale=0.01)
        ledger.begin_run("snapshot/1", "snapshot")          # the safety net's baseline, while the clock ticks on
        done = threading.Event()
        ticker = threading.Thread(target=lambda: [sb.world.advance(0.5) for _ in iter(lambda: done.wait(0.02), True)])
        ticker.start()
        try:
            for system in hooks:
                snapshot_system(system, ledger=ledger, run_id="snapshot/1", settings=settings, hook=hooks[system],
                                window_start=scenario.as_of - timedelta(days=1), window_end=clock.now())
        finally:
            done.set()
            ticker.join()
        assert (clock.now() - scenario.as_of).total_seconds() < W_START, "snapshots ran into the world's events"

        with listening(ledger, conns["omnirecon_shopify"]["extra"]["client_secret"], hooks, NS_SECRET) as rx:

            def advance(seconds: float) -> None:
                for _ in range(max(1, round(seconds))):
                    sb.world.advance(1.0)
                    wait_for(lambda: sb.notifications.outbox.pending() == 0, 20, "this second's deliveries")

            def elapsed() -> float:
                return (clock.now() - scenario.as_of).total_seconds()

            advance(W_CHANGE_AT + 3 - elapsed())
            total = inbox_count(ledger)
            assert total >= 8 and _unprocessed(ledger) == total      # ERP and Shopify notifications, none taken
            run = "omnirecon_live/1"
            ledger.begin_run(run, "live")

            # 1. killed mid-watch, after it took the inbox: nothing marked, nothing persisted
            killed = _run_child(_live_worker, ledger.url, conns, settings_doc, run, clock.now(), "watch")
            assert killed == -signal.SIGKILL
            assert _unprocessed(ledger) == total and _gaps(ledger, run) == []

            # 2. the retry, killed after persisting its findings, before marking the notifications processed
            advance(W_CHANGE_AT + W_SLA + 2 - elapsed())
            killed = _run_child(_live_worker, ledger.url, conns, settings_doc, run, clock.now(), "mark")
            assert killed == -signal.SIGKILL
            assert _unprocessed(ledger) == total and len(_gaps(ledger, run)) == 1

            # 3. the next retry completes: every notification taken once, the gap found once
            reader = get_adapter("walmart").quantity_reader(hooks["walmart"], settings)
            first = live_cycle(ledger, settings, run_id=run, now=clock.now, sleep=advance, reader=reader,
                               readable=("walmart",))
            assert first["notifications"] == total and _unprocessed(ledger) == 0
            [gap] = _gaps(ledger, run)
            assert (gap.channel, gap.sku, gap.action) == ("walmart", "SKU-000", "push")
            with ledger.session() as s:
                detections = list(s.scalars(select(m.TriggerDetection).where(m.TriggerDetection.sku == "SKU-000")))
            assert [d.hop for d in detections] == ["erp->walmart"]

            # 4. the push, killed with its write in flight: Walmart applied it, the worker never heard
            plan = plan_corrections(ledger, settings, run_id=run, mode="apply", now=clock.now())
            assert plan.counts == {"planned": 1}
            [batch] = plan.batches
            armed = {"pid": None}
            record = sb.record_write

            def record_write(system, operation, key, body, applied, **kw):
                record(system, operation, key, body, applied, **kw)
                if applied and system == "walmart" and armed["pid"]:
                    os.kill(armed["pid"], signal.SIGKILL)       # before the answer leaves the channel
            sb.record_write = record_write
            proc = _SPAWN.Process(target=_push_worker, args=(ledger.url, conns, settings_doc, batch))
            proc.start()
            armed["pid"] = proc.pid
            proc.join(180)
            armed["pid"] = None
            assert proc.exitcode == -signal.SIGKILL
            with ledger.session() as s:
                c = s.scalars(select(m.Correction)).one()
            assert c.status != "verified" and {i["sku"]: i["quantity"] for i in sb.state()["walmart"]["items"]
                                               }["SKU-000"] == c.to_qty == 50 - 12 - 1

            # 5. the next change-driven run comes before the push's retry: it must not push the gap again
            ledger.begin_run("omnirecon_live/2", "live")
            advance(5)
            second = live_cycle(ledger, settings, run_id="omnirecon_live/2", now=clock.now, sleep=advance,
                                reader=reader, readable=("walmart",))
            again = plan_corrections(ledger, settings, run_id="omnirecon_live/2", mode="apply", now=clock.now())
            assert second["findings"] == 0 and again.counts == {}     # Walmart reads as followed: no new gap
            # 6. the push's retry (Airflow retries the task): it re-reads, finds its target there, verifies
            for b in [batch] + again.batches:
                push_batch(ledger, settings, b, hook_factory=lambda channel: hooks[channel], clock=ScaledClock(0.05))
            writes = [w for w in sb.world.writes if w["system"] == "walmart" and w["by"] == "api"]
            received = [w for w in sb.writes() if w["system"] == "walmart" and w["applied"]]
    assert [(w["sku"], w["value"]) for w in writes] == [("SKU-000", 37)]     # one correction, one write
    assert len(received) == 1
    with ledger.session() as s:
        first_c = s.scalars(select(m.Correction).where(m.Correction.run_id == run)).one()
        others = list(s.scalars(select(m.Correction).where(m.Correction.run_id != run)))
    assert (first_c.status, first_c.to_qty) == ("verified", 37)
    assert all(o.status != "verified" or "already at target" in (o.detail or "") for o in others), \
        [(o.status, o.detail) for o in others]
    assert _unprocessed(ledger) == 0 and first["notifications"] + second["notifications"] == inbox_count(ledger)


# -- triggerer: a real `airflow triggerer` SIGKILLed ---------------------------------------------------------------
class Triggerer:
    """`airflow triggerer` in a process group of its own (it starts a trigger runner and a log server under it)."""

    def __init__(self, env: dict, log_path):
        self.env, self.log_path, self.proc = env, log_path, None

    def start(self) -> "Triggerer":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([airflow_setup.airflow_bin(), "triggerer"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self, sig=signal.SIGKILL) -> int:
        try:
            os.killpg(self.proc.pid, sig)       # the group this test started, by its id
        except ProcessLookupError:
            pass
        return self.proc.wait(60)


def _asset_events(db_path) -> list[dict]:
    import sqlite3
    con = sqlite3.connect(db_path, timeout=30)
    try:
        rows = con.execute("SELECT extra FROM asset_event ORDER BY id").fetchall()
    finally:
        con.close()
    return [json.loads(extra)["payload"] for (extra,) in rows]


def _put(ledger, *event_ids: str) -> None:
    from omnirecon.live.inbox import Inbox, Incoming
    box = Inbox(ledger)
    try:
        for e in event_ids:
            body = json.dumps({"inventory_item_id": 1, "location_id": 1001, "available": len(e)}).encode()
            assert box.put(Incoming("shopify", e, "inventory_levels/update", body), timeout_s=60)
    finally:
        box.stop()


def test_a_triggerer_killed_loses_no_wake_up_and_no_notification_is_taken_twice(tmp_path):
    import shutil

    from omnirecon.config import project_home, settings_from_dict
    from omnirecon.live.cycle import live_cycle
    airflow_setup.init(quiet=True)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    (tmp_path / "dags").mkdir()
    shutil.copy(project_home() / "dags" / "omnirecon_live.py", tmp_path / "dags")
    shutil.copy(airflow_setup.airflow_home() / airflow_setup.CLEAN_DB, tmp_path / "airflow.db")
    env = airflow_setup.airflow_env({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",      # an unpaused DAG's watchers are registered
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        # a restarted triggerer takes over the triggers of one whose heartbeat stopped this long ago (default 30 s)
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
        "OMNIRECON_LEDGER_URL": ledger.url})
    r = airflow_setup.run_airflow(["dags", "reserialize"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    settings = settings_from_dict(world_doc()["settings"])
    taken: list[int] = []

    def live_run(n: int) -> None:        # what each ring starts: an omnirecon_live run's `watch`
        ledger.begin_run(f"omnirecon_live/{n}", "live")
        taken.append(live_cycle(ledger, settings, run_id=f"omnirecon_live/{n}", max_watch_s=0)["notifications"])

    db = tmp_path / "airflow.db"
    trig = Triggerer(env, tmp_path / "triggerer.log")
    _put(ledger, "a", "b")                                  # waiting before the triggerer ever ran
    trig.start()
    try:
        wait_for(lambda: len(_asset_events(db)) == 1, 120, "the first ring", proc=trig.proc)
        assert _asset_events(db)[0]["pending"] == 2
        live_run(1)
        _put(ledger, "c")
        wait_for(lambda: len(_asset_events(db)) == 2, 60, "a ring for c", proc=trig.proc)
        assert trig.kill() == -signal.SIGKILL               # rang for c; no run took c yet
        _put(ledger, "d", "e", "f")                          # while nothing rings
        trig.start()
        rings = wait_for(lambda: len(_asset_events(db)) >= 3 and _asset_events(db), 120, "a ring after the restart",
                         proc=trig.proc)
        newest = max(n.id for n in inbox(ledger))
        assert rings[2] == {**rings[2], "newest_id": newest, "pending": 4}   # c, d, e, f
        live_run(2)
    finally:
        trig.kill(signal.SIGTERM)
    assert taken == [2, 4] and sum(taken) == inbox_count(ledger) == 6
    with ledger.session() as s:
        assert not s.scalars(select(m.Notification).where(m.Notification.processed_at.is_(None))).all()
    import sqlite3
    con = sqlite3.connect(db)
    try:                                        # the rings queued runs of the live DAG
        assert con.execute("SELECT DISTINCT target_dag_id FROM asset_dag_run_queue").fetchall() == [("omnirecon_live",)]
    finally:
        con.close()


# -- worker: a notification that commits late --------------------------------------------------------------------
@pytest.mark.postgres
def test_a_notification_committed_out_of_id_order_is_not_taken_by_a_run_that_never_read_it(pg_ledger, monkeypatch):
    """PostgreSQL hands out ids at insert and several writers share the inbox (receivers, the SQS consumer): a row
    may commit after a higher id did. A live run that read the inbox before it committed must leave it unprocessed,
    the doorbell (InboxTrigger) must ring for it, and the next run takes it; none is marked taken unread."""
    import asyncio

    from omnirecon.config import settings_from_dict
    from omnirecon.live.cycle import live_cycle
    from omnirecon.live.trigger import InboxTrigger, pending
    from omnirecon.timeutil import utcnow
    monkeypatch.setenv("OMNIRECON_LEDGER_URL", pg_ledger.url)
    ledger, settings = pg_ledger, settings_from_dict(world_doc()["settings"])
    late = ledger.Session()
    late.add(m.Notification(source="erp", event_id="late", topic="inventoryadjustment/create", body="{}",
                            received_at=utcnow()))
    late.flush()                                           # its id is handed out; its writer has not committed
    _put(ledger, "early")                                  # a higher id, committed
    calls, taken = [], []

    def now():                                             # the run's clock: its third reading comes after the
        calls.append(1)                                    # run read the inbox and watched the chain
        if len(calls) == 3:
            late.commit()
        return utcnow()

    def run(n: int, clock=utcnow) -> None:
        ledger.begin_run(f"omnirecon_live/{n}", "live")
        taken.append(live_cycle(ledger, settings, run_id=f"omnirecon_live/{n}", now=clock, max_watch_s=0)
                     ["notifications"])

    async def doorbell() -> list[dict]:
        gen = InboxTrigger(poll_interval_s=0.05, stale_after_s=3600).run()     # no stale re-ring in this test
        try:
            rings = [(await asyncio.wait_for(gen.__anext__(), 30)).payload]
            await asyncio.to_thread(run, 1, now)
            rings.append((await asyncio.wait_for(gen.__anext__(), 30)).payload)
            await asyncio.to_thread(run, 2)
            return rings
        finally:
            await gen.aclose()
    rings = asyncio.run(doorbell())
    late.close()
    with ledger.session() as s:
        ids = dict(s.execute(select(m.Notification.event_id, m.Notification.id)).all())
    assert ids["late"] < ids["early"] and len(calls) >= 3
    assert [(r["newest_id"], r["pending"]) for r in rings] == [(ids["early"], 1), (ids["late"], 1)]
    assert taken == [1, 1] and pending(ledger)[1] == 0
