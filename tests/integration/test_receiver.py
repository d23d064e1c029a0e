"""The notification receiver over real HTTP: nothing unsigned is stored, a verified notification is in the ledger
before the 2xx, duplicates are stored once (also across receivers sharing a PostgreSQL ledger), a ledger that
cannot take it yields 503 (so the platform redelivers) and the receiver survives garbage."""
import base64
import hashlib
import hmac
import json
import os
import random
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from omnirecon.ledger import Ledger
from omnirecon.ledger import models as m
from omnirecon.live.inbox import Inbox
from omnirecon.live.receiver import MAX_BODY_BYTES, Receiver
from omnirecon.adapters.shopify.notifications import ShopifySource
from omnirecon.adapters.walmart.notifications import WalmartSource

SECRET = "shopify-app-secret"


def signed(body: bytes, webhook_id: str, secret: str = SECRET) -> dict:
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode(),
            "X-Shopify-Topic": "inventory_levels/update", "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Triggered-At": "2026-12-01T10:00:00Z", "Content-Type": "application/json"}


def body(n: int) -> bytes:
    return json.dumps({"inventory_item_id": n, "location_id": 1, "available": n % 7}).encode()


def stored(ledger) -> list[tuple[str, str]]:
    with ledger.session() as s:
        return [(n.source, n.event_id) for n in s.scalars(select(m.Notification).order_by(m.Notification.id))]


@pytest.fixture
def receiver(sqlite_ledger):
    with Receiver(Inbox(sqlite_ledger), {"shopify": ShopifySource(SECRET), "walmart": WalmartSource("wm-secret")}) as r:
        yield r


def test_a_verified_notification_is_in_the_ledger_when_the_200_arrives(receiver, sqlite_ledger):
    r = requests.post(receiver.url + "/notifications/shopify", data=body(1), headers=signed(body(1), "wh-1"), timeout=10)
    assert r.status_code == 200 and r.json() == {"stored": True, "duplicate": False}
    # read through a connection of its own: committed, not just visible to the writer
    con = sqlite3.connect(sqlite_ledger.engine.url.database)
    assert con.execute("SELECT source, event_id, topic, body FROM notifications").fetchall() == [
        ("shopify", "wh-1", "inventory_levels/update", body(1).decode())]


def test_duplicates_are_answered_200_and_stored_once(receiver, sqlite_ledger):
    for _ in range(3):
        r = requests.post(receiver.url + "/notifications/shopify", data=body(2), headers=signed(body(2), "wh-2"), timeout=10)
        assert r.status_code == 200
    assert r.json()["duplicate"] is True
    assert stored(sqlite_ledger) == [("shopify", "wh-2")]
    assert receiver.counts["stored"] == 1 and receiver.counts["duplicate"] == 2


def test_nothing_unsigned_malformed_oversized_or_misrouted_is_stored(receiver, sqlite_ledger):
    url = receiver.url + "/notifications/shopify"
    cases = [
        (requests.post(url, data=body(3), headers={**signed(body(3), "wh-3"), "X-Shopify-Hmac-Sha256": "AAAA"}, timeout=10), 401),
        (requests.post(url, data=body(3), headers=signed(body(3), "wh-3", secret="someone-else"), timeout=10), 401),
        (requests.post(url, data=body(3) + b"x", headers=signed(body(3), "wh-3"), timeout=10), 401),
        (requests.post(url, data=b"{not json", headers=signed(b"{not json", "wh-4"), timeout=10), 400),
        (requests.post(receiver.url + "/notifications/amazon", data=body(3), headers=signed(body(3), "wh-5"), timeout=10), 404),
        (requests.post(url, data=b"x" * (MAX_BODY_BYTES + 1), headers=signed(b"", "wh-6"), timeout=10), 413),
    ]
    assert [r.status_code for r, _ in cases] == [want for _, want in cases]
    assert stored(sqlite_ledger) == []
    ok = requests.post(url, data=body(7), headers=signed(body(7), "wh-7"), timeout=10)
    assert ok.status_code == 200 and stored(sqlite_ledger) == [("shopify", "wh-7")]
    c = receiver.counts
    assert c["in"] == 7 and c["stored"] == 1 and sum(v for k, v in c.items() if k.startswith("rejected:")) == 6


def test_a_ledger_that_cannot_take_it_gets_503_and_the_redelivery_is_stored_once(sqlite_ledger):
    with Receiver(Inbox(sqlite_ledger), {"shopify": ShopifySource(SECRET)}, store_timeout_s=1.0) as rec:
        blocker = sqlite3.connect(sqlite_ledger.engine.url.database, timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")                      # another process holds the database
        r = requests.post(rec.url + "/notifications/shopify", data=body(8), headers=signed(body(8), "wh-8"), timeout=30)
        assert r.status_code == 503                              # not acknowledged: Shopify will redeliver
        blocker.rollback()
        blocker.close()
        again = requests.post(rec.url + "/notifications/shopify", data=body(8), headers=signed(body(8), "wh-8"), timeout=30)
        assert again.status_code == 200
    assert stored(sqlite_ledger) == [("shopify", "wh-8")]


def test_concurrent_deliveries_are_all_stored_with_group_commit(receiver, sqlite_ledger):
    def deliver(n):
        return requests.post(receiver.url + "/notifications/shopify", data=body(n), headers=signed(body(n), f"wh-c{n}"),
                             timeout=30).status_code
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(deliver, range(300)))
    assert codes == [200] * 300
    assert sorted(e for _, e in stored(sqlite_ledger)) == sorted(f"wh-c{n}" for n in range(300))


def test_fuzzed_deliveries_store_nothing_and_the_receiver_stays_up(receiver, sqlite_ledger):
    rng = random.Random(7)
    for i in range(200):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        headers = {"X-Shopify-Hmac-Sha256": base64.b64encode(os.urandom(32)).decode(),
                   "X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"f{i}"}
        if i % 3 == 0:
            headers = {k: v for k, v in headers.items() if rng.random() < 0.5}
        path = rng.choice(["/notifications/shopify", "/notifications/walmart", "/notifications/", "/x"])
        r = requests.post(receiver.url + path, data=raw, headers=headers, timeout=10)
        assert 400 <= r.status_code < 500
    assert stored(sqlite_ledger) == []
    assert requests.get(receiver.url + "/healthz", timeout=5).json()["ok"] is True


@pytest.mark.postgres
def test_two_receivers_on_one_postgresql_ledger_store_a_duplicate_once(pg_url):
    ledgers = [Ledger(pg_url), Ledger(pg_url)]
    ledgers[0].migrate()
    recs = [Receiver(Inbox(led), {"shopify": ShopifySource(SECRET)}).start() for led in ledgers]
    try:
        barrier = threading.Barrier(8)

        def deliver(i):
            barrier.wait()
            rec = recs[i % 2]
            return requests.post(rec.url + "/notifications/shopify", data=body(9), headers=signed(body(9), "wh-9"),
                                 timeout=30).status_code
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(deliver, range(8)))
    finally:
        for rec in recs:
            rec.stop()
    assert codes == [200] * 8
    with ledgers[0].session() as s:
        assert s.scalar(select(func.count()).select_from(m.Notification)) == 1
    for led in ledgers:
        led.engine.dispose()


def test_a_half_sent_request_does_not_hold_its_thread(sqlite_ledger):
    """A client that sends part of a request and goes quiet is cut off after the idle timeout: the connection is
    closed by the receiver, nothing is stored, and a signed delivery right after is stored as usual."""
    import socket

    with Receiver(Inbox(sqlite_ledger), {"shopify": ShopifySource(SECRET)}, idle_timeout_s=0.5) as r:
        host, port = r.server.server_address[:2]
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(b"POST /notifications/shopify HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"partial\"")
            assert conn.recv(1024) == b""          # closed by the receiver (recv would time out after 10 s)
        ok = requests.post(r.url + "/notifications/shopify", data=body(7), headers=signed(body(7), "w-after"),
                           timeout=10)
        assert ok.status_code == 200 and stored(sqlite_ledger) == [("shopify", "w-after")]
