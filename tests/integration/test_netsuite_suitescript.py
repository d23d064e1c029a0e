"""include/netsuite/omnirecon_ue.js, run under Node with stand-ins for NetSuite's N/ modules, produces exactly the
format the sandbox's deployment posts (and omnirecon's receiver verifies): the same fields and a signature over
"<timestamp>.<raw body>" that the receiver accepts."""
import json
import shutil
import subprocess
from pathlib import Path

import requests

from omnirecon.adapters.erp.notifications import NetSuiteSource
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.notify.netsuite import sign
from tests.support.receiver import Receiver
from tests.support.sandbox_http import scenario_doc

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ns-shared-secret-0123456789"


def run_script(case: dict) -> dict:
    node = shutil.which("node")
    assert node, "Node.js runs the SuiteScript in this test (it is on the project's machines)"
    out = subprocess.run([node, str(ROOT / "tests/support/netsuite/run_ue.js"), str(ROOT / "include/netsuite/omnirecon_ue.js")],
                         input=json.dumps(case), capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


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
    assert set(script_msg) == set(sandbox_msg) == {"recordType", "id", "type", "timestamp", "items", "salesOrder"}
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
