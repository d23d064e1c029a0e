"""include/netsuite/ (the user-event script omnirecon_ue.js, the retry Map/Reduce omnirecon_retry_mr.js and their
outbox module), run under Node with stand-ins for NetSuite's N/ modules (tests/support/netsuite/suitescript.js):
afterSubmit produces exactly the format the sandbox's deployment posts (and omnirecon's receiver verifies): the
same fields, an eventId, and a signature over "<timestamp>.<raw body>" that the receiver accepts; a failed post
is queued in the outbox custom record with its message and a retry run is requested; the retry script posts due
messages re-signed at the time of the retry, deletes them on a 2xx, backs off on failure and gives up after 72 h."""
import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from omnirecon.adapters.erp.notifications import NetSuiteSource
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.notify.netsuite import sign
from tests.support.receiver import Receiver
from tests.support.sandbox_http import scenario_doc

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ns-shared-secret-0123456789"


def run_steps(steps: list[dict], secrets: dict | None = None) -> list[dict]:
    """Each step's requests, submitted tasks, logs and the outbox records after it (one account state)."""
    node = shutil.which("node")
    assert node, "Node.js runs the SuiteScript in this test (it is on the project's machines)"
    out = subprocess.run([node, str(ROOT / "tests/support/netsuite/suitescript.js"),
                          str(ROOT / "include/netsuite/omnirecon_ue.js")],
                         input=json.dumps({"steps": steps, "secrets": secrets or {"custsecret_omnirecon": SECRET}}),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def run_script(case: dict) -> dict:
    """afterSubmit on `case`, the receiver answering 200 -> the request it made."""
    step = run_steps([{"run": "afterSubmit", "case": case}], case.get("secrets"))[0]
    assert [l for l in step["logs"] if l[0] == "error"] == [] and step["tasks"] == [] and step["outbox"] == []
    assert len(step["requests"]) == 1
    return step["requests"][0]


def sandbox_message() -> tuple[dict, dict]:
    """What the sandbox's deployment posts for a new sales order (the same change the script is run on)."""
    with Sandbox(from_dict(scenario_doc(notifications={"erp": {}})), time_scale=0.001) as sb, Receiver() as rx:
        requests.put(sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon",
                     json={"url": rx.url, "secret": SECRET}, timeout=5).raise_for_status()
        sb.systems["erp"].add_sales_order("shopify", "gid://shopify/Order/77", [{"sku": "TEE-BLK-M", "quantity": 1}],
                                          "WH-EAST")
        req = rx.wait_for(1)[0]
        return json.loads(req["body"]), req["headers"]


def test_suitescript_sales_order_message_matches_the_sandbox_and_verifies():
    case = {
        "type": "create", "parameters": {"custscript_omnirecon_url": "https://recon.example.com/notifications/erp",
                                         "custscript_omnirecon_secret_id": "custsecret_omnirecon"},
        "secrets": {"custsecret_omnirecon": SECRET},
        "record": {"type": "salesorder", "id": "100001",
                   "fields": {"tranid": "SO100001", "orderstatus": "B", "otherrefnum": "gid://shopify/Order/77",
                              "custbody_omnirecon_channel": "shopify", "location": "1"},
                   "texts": {"location": "WH-EAST"},
                   "sublists": {"item": [{"item": "501", "location": "1", "quantity": 1, "quantityfulfilled": 0,
                                          "_text": {"item": "TEE-BLK-M", "location": "WH-EAST"}}]}},
        "search": [{"id": "501", "values": {"itemid": "TEE-BLK-M", "inventorylocation": "1",
                                            "locationquantityonhand": "10", "locationquantitycommitted": "3"},
                    "texts": {"inventorylocation": "WH-EAST"}}],
        "records": {},
    }
    sent = run_script(case)
    body, headers = sent["body"].encode(), sent["headers"]
    ts = headers["X-Omnirecon-Timestamp"]
    assert headers["X-Omnirecon-Signature"] == sign(SECRET, ts, body)
    NetSuiteSource(SECRET).verify(body, headers)                     # omnirecon's receiver accepts it
    script_msg = json.loads(body)
    sandbox_msg, sandbox_headers = sandbox_message()
    NetSuiteSource(SECRET).verify(json.dumps(sandbox_msg, separators=(",", ":")).encode(), {
        "X-Omnirecon-Timestamp": sandbox_headers["x-omnirecon-timestamp"],
        "X-Omnirecon-Signature": sign(SECRET, sandbox_headers["x-omnirecon-timestamp"],
                                      json.dumps(sandbox_msg, separators=(",", ":")).encode())})
    assert set(script_msg) == set(sandbox_msg) == {"eventId", "recordType", "id", "type", "timestamp", "items",
                                                   "salesOrder"}
    assert len(script_msg["eventId"]) == len(sandbox_msg["eventId"]) == 36          # a UUID per message
    assert NetSuiteSource(SECRET).verify(body, headers).event_id == script_msg["eventId"]
    assert set(script_msg["salesOrder"]) == set(sandbox_msg["salesOrder"])
    assert set(script_msg["items"][0]) == set(sandbox_msg["items"][0])
    assert script_msg["items"][0] == {"item": "TEE-BLK-M", "itemId": 501, "location": "WH-EAST", "locationId": 1,
                                      "quantityOnHand": 10, "quantityCommitted": 3, "quantityAvailable": 7}
    assert script_msg["salesOrder"]["lines"] == sandbox_msg["salesOrder"]["lines"]
    assert (script_msg["recordType"], script_msg["type"]) == (sandbox_msg["recordType"], sandbox_msg["type"]) \
        == ("salesorder", "create")
    for key in ("status", "otherRefNum", "channel"):
        assert script_msg["salesOrder"][key] == sandbox_msg["salesOrder"][key]


def test_suitescript_fulfilment_carries_its_sales_order():
    so = {"type": "salesorder", "id": "100001",
          "fields": {"tranid": "SO100001", "orderstatus": "F", "otherrefnum": "111-0000000-0000001",
                     "custbody_omnirecon_channel": "amazon"}, "texts": {"location": "WH-EAST"},
          "sublists": {"item": [{"item": "502", "quantity": 2, "quantityfulfilled": 2,
                                 "_text": {"item": "MUG-WHT", "location": "WH-EAST"}}]}}
    case = {"type": "create", "parameters": {"custscript_omnirecon_url": "https://x/notifications/erp",
                                             "custscript_omnirecon_secret_id": "s"}, "secrets": {"s": SECRET},
            "record": {"type": "itemfulfillment", "id": "100002", "fields": {"createdfrom": "100001"},
                       "sublists": {"item": [{"item": "502", "location": "1", "quantity": 2}]}},
            "search": [{"id": "502", "values": {"itemid": "MUG-WHT", "inventorylocation": "1",
                                                "locationquantityonhand": "3", "locationquantitycommitted": "0"},
                        "texts": {"inventorylocation": "WH-EAST"}}],
            "records": {"100001": so}}
    msg = json.loads(run_script(case)["body"])
    assert msg["recordType"] == "itemfulfillment" and msg["createdFrom"] == 100001
    assert msg["salesOrder"]["status"] == "F" and msg["salesOrder"]["lines"][0]["quantityFulfilled"] == 2
    assert msg["items"][0]["quantityAvailable"] == 3


# -- the outbox and the retry script ------------------------------------------------------------------------------
T0 = 1_764_000_000_000                                     # ms (2025-11-24T16:00:00Z): the steps' clock
URL = "https://recon.example.com/notifications/erp"
OUTBOX = "customrecord_omnirecon_outbox"
F = {k: f"custrecord_omnirecon_ob_{k}" for k in ("event_id", "body", "url", "secret_id", "attempts", "first_at",
                                                 "next_at", "last_error", "failed")}


def adjustment(record_id: int = 7001) -> dict:
    return {"run": "afterSubmit", "case": {
        "type": "create", "parameters": {"custscript_omnirecon_url": URL,
                                         "custscript_omnirecon_secret_id": "custsecret_omnirecon"},
        "record": {"type": "inventoryadjustment", "id": str(record_id), "fields": {"location": "1"},
                   "sublists": {"inventory": [{"item": "502", "location": "1"}]}},
        "search": [{"id": "502", "values": {"itemid": "MUG-WHT", "inventorylocation": "1",
                                            "locationquantityonhand": "3", "locationquantitycommitted": "0"},
                    "texts": {"inventorylocation": "WH-EAST"}}]}}


def at(ms: int, step: dict, **kw) -> dict:
    return dict(step, now=ms, **kw)


def retry(ms: int, https=(), flush: bool = False) -> dict:
    return {"run": "retry", "now": ms, "https": list(https), "parameters": {"custscript_omnirecon_retry_flush": flush}}


def when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def errors(step: dict) -> list[str]:
    return [title for level, title, _ in step["logs"] if level == "error"]


def test_a_failed_post_is_queued_with_its_message_and_event_id_and_asks_for_a_retry_run():
    first, second = run_steps([at(T0, adjustment(7001), https=[{"code": 503}]),
                               at(T0 + 2000, adjustment(7002), https=[{"throw": "The host did not answer"}])])
    sent = first["requests"][0]
    (queued,) = first["outbox"]
    message = json.loads(sent["body"])
    assert queued[F["body"]] == sent["body"] and queued[F["event_id"]] == message["eventId"] == queued["name"]
    assert (queued[F["url"]], queued[F["secret_id"]], queued[F["attempts"]], queued[F["failed"]]) == \
        (URL, "custsecret_omnirecon", 1, False)
    assert queued[F["first_at"]] == queued[F["next_at"]] == T0 / 1000          # due for the run it asks for
    assert queued[F["last_error"]] == "HTTP 503"
    assert first["tasks"] == [{"taskType": "MAP_REDUCE", "scriptId": "customscript_omnirecon_retry_mr",
                               "deploymentId": "customdeploy_omnirecon_retry_mr",
                               "params": {"custscript_omnirecon_retry_flush": False}}]
    assert errors(first) == ["omnirecon notification failed, queued for retry"]
    # an exception (timeout) is queued too; the run already queued makes NetSuite refuse another: ignored
    assert second["tasks"] == [] and len(second["outbox"]) == 2
    assert second["outbox"][1][F["last_error"]].endswith("The host did not answer")
    assert any(title == "omnirecon retry not submitted" for _, title, _ in second["logs"])
    assert {o[F["event_id"]] for o in second["outbox"]} == \
        {json.loads(r["body"])["eventId"] for r in first["requests"] + second["requests"]}


def test_the_retry_script_posts_due_messages_re_signed_so_the_receiver_accepts_them_and_deletes_them():
    later = T0 + 10 * 60_000                                  # the receiver refuses the first signature by then
    failed, run = run_steps([at(T0, adjustment(), https=[{"code": 502}]), retry(later)])
    original, resent = failed["requests"][0], run["requests"][0]
    assert resent["body"] == original["body"] and resent["url"] == URL            # the same message, same eventId
    assert resent["headers"]["X-Omnirecon-Timestamp"] == str(later // 1000)
    assert resent["headers"]["X-Omnirecon-Signature"] == sign(SECRET, str(later // 1000), resent["body"].encode())
    receiver = NetSuiteSource(SECRET)
    got = receiver.verify(resent["body"].encode(), resent["headers"], now=when(later))
    assert got.event_id == json.loads(original["body"])["eventId"]
    with pytest.raises(Exception, match="outside the allowed window"):
        receiver.verify(original["body"].encode(), original["headers"], now=when(later))
    assert run["outbox"] == [] and run["taken"] == [1]
    audit = [json.loads(details) for level, title, details in run["logs"] if title == "omnirecon retries"]
    assert audit == [{"delivered": 1, "queued": 0, "failed": 0}]


def test_the_retry_script_backs_off_flushes_when_the_receiver_is_back_and_gives_up_after_72_hours():
    s = 1000
    steps = [at(T0, adjustment(7001), https=[{"code": 503}]),            # queued, run requested
             retry(T0 + 5 * s, https=[{"code": 500}]),                   # attempt 2 fails: next in 60 s
             retry(T0 + 30 * s),                                         # not due: nothing posted
             retry(T0 + 66 * s, https=[{"throw": "timeout"}]),           # attempt 3 fails: next in 120 s
             at(T0 + 70 * s, adjustment(7002), https=[{"code": 200}]),   # a post gets through: flush requested
             retry(T0 + 71 * s, flush=True),                             # takes it though not due
             at(T0 + 80 * s, adjustment(7003), https=[{"code": 503}]),   # a new one fails ...
             *[retry(T0 + (90 + 3600 * h) * s, https=[{"code": 503}]) for h in range(0, 73, 6)]]
    results = run_steps(steps)
    first, run2, run3, run4, ok, flush, again = results[:7]
    (rec,) = run2["outbox"]
    assert rec[F["attempts"]] == 2 and rec[F["next_at"]] == T0 / s + 5 + 60 and rec[F["last_error"]] == "HTTP 500"
    assert run3["requests"] == [] and run3["taken"] == []
    (rec,) = run4["outbox"]
    assert rec[F["attempts"]] == 3 and rec[F["next_at"]] == T0 / s + 66 + 120
    assert ok["tasks"][0]["params"] == {"custscript_omnirecon_retry_flush": True} and ok["cache"] == {}
    assert [json.loads(r["body"])["id"] for r in flush["requests"]] == [7001] and flush["outbox"] == []
    assert again["cache"] == {"omnirecon_outbox:queued": "1"} and len(again["outbox"]) == 1
    # then every 6 h (the scheduled deployment) it fails until it is 72 h old: marked failed, kept, logged
    attempts = [r["outbox"][0][F["attempts"]] for r in results[7:]]
    assert attempts == list(range(2, 2 + len(attempts)))
    last = results[-1]
    (kept,) = last["outbox"]
    assert kept[F["failed"]] is True and "omnirecon notification given up" in errors(last)
    assert all(not r["outbox"][0][F["failed"]] for r in results[7:-1])
    after = run_steps(steps + [retry(T0 + 80 * 3600 * s, flush=True)])[-1]
    assert after["requests"] == [] and after["outbox"][0][F["failed"]] is True


def test_the_sdf_objects_define_every_record_field_script_deployment_and_parameter_the_scripts_use():
    import re
    import xml.etree.ElementTree as ET
    netsuite = ROOT / "include/netsuite"
    defined, files = set(), set()
    for path in (netsuite / "objects").glob("*.xml"):
        root = ET.parse(path).getroot()
        defined |= {e.get("scriptid") for e in root.iter() if e.get("scriptid")}
        files |= {e.text.strip("[]").rsplit("/", 1)[-1] for e in root.iter("scriptfile")}
    used = set()
    for js in netsuite.glob("*.js"):
        used |= set(re.findall(r"\b(custom(?:record|script|deploy)_\w+|cust(?:record|script)_\w+)\b", js.read_text()))
    used -= {"custsecret_omnirecon"}
    assert used and used <= defined, used - defined
    assert files == {"omnirecon_ue.js", "omnirecon_retry_mr.js"} and all((netsuite / f).exists() for f in files)
    assert {"customdeploy_omnirecon_retry_sched", "customdeploy_omnirecon_ue_salesorder"} <= defined
