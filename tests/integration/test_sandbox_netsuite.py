"""NetSuite SuiteTalk REST imitation over real HTTP: OAuth 1.0a, SuiteQL on SQLite, records, concurrency."""
import re
import threading
import time

import pytest
import requests

from tests.support.sandbox_http import netsuite_auth, ns_get, scenario_doc, suiteql
from omnirecon_sandbox import Sandbox
from omnirecon_contract.scenario import from_dict


@pytest.fixture()
def sb():
    with Sandbox(from_dict(scenario_doc()), time_scale=0.01) as s:
        yield s


def test_oauth_signature_nonce_replay_and_bad_secret(sb):
    ok = suiteql(sb, "SELECT id FROM item")
    assert ok.status_code == 200
    url = f"{sb.urls['erp']}/services/rest/query/v1/suiteql?limit=10&offset=0"
    auth = netsuite_auth(sb, "POST", url, nonce="fixed-nonce")
    first = requests.post(url, json={"q": "SELECT id FROM item"}, headers={"Authorization": auth, "Prefer": "transient"}, timeout=10)
    replay = requests.post(url, json={"q": "SELECT id FROM item"}, headers={"Authorization": auth, "Prefer": "transient"}, timeout=10)
    assert first.status_code == 200 and replay.status_code == 401
    body = replay.json()
    assert body["status"] == 401 and body["title"] == "Unauthorized"
    assert body["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
    assert suiteql(sb, "SELECT id FROM item", consumer_secret="wrong").status_code == 401
    assert suiteql(sb, "SELECT id FROM item", timestamp=int(time.time()) - 3600).status_code == 401
    tampered = netsuite_auth(sb, "POST", url.replace("limit=10", "limit=20"))       # signed another query
    assert requests.post(url, json={"q": "SELECT id FROM item"}, timeout=10,
                         headers={"Authorization": tampered, "Prefer": "transient"}).status_code == 401


def test_suiteql_shape_builtin_df_and_booleans(sb):
    r = suiteql(sb, "SELECT i.id, i.itemid, i.itemtype, BUILTIN.DF(iil.location) AS loc, iil.quantityonhand, "
                    "iil.quantitycommitted, iil.quantityavailable, iil.lastmodifieddate FROM item i "
                    "JOIN inventoryitemlocations iil ON iil.item = i.id WHERE i.isinactive = 'F' ORDER BY i.id, iil.location")
    body = r.json()
    assert set(body) == {"links", "count", "hasMore", "items", "offset", "totalResults"}
    assert body["count"] == 3 and body["totalResults"] == 3 and body["hasMore"] is False
    first = body["items"][0]
    assert first["itemid"] == "TEE-BLK-M" and first["loc"] == "WH-EAST" and first["quantityavailable"] == "8"
    assert all(isinstance(v, str) for k, v in first.items() if k != "links")
    assert re.match(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d\d [ap]m$", first["lastmodifieddate"])   # account format
    inactive = suiteql(sb, "SELECT id, itemtype, BUILTIN.DF(itemtype) label FROM item WHERE isinactive = 'T'").json()["items"]
    assert inactive == [{"links": [], "id": "503", "itemtype": "NonInvtPart", "label": "Non-inventory Item"}]


def test_transactions_status_and_nulls_omitted(sb):
    rows = suiteql(sb, "SELECT t.id, t.tranid, t.type, t.status, BUILTIN.DF(t.status) statuslabel, t.otherrefnum, "
                       "t.custbody_omni_channel, t.createdfrom FROM transaction t ORDER BY t.id").json()["items"]
    so, ship, so2 = rows[0], rows[1], rows[2]
    assert [r["id"] for r in rows] == ["7001", "9001", "9002"]
    assert ship["type"] == "SalesOrd" and ship["status"] == "B" and ship["statuslabel"] == "Sales Order : Pending Fulfillment"
    assert "createdfrom" not in ship                                          # null -> omitted
    assert so["type"] == "ItemShip" and so["createdfrom"] == "9002" and so["statuslabel"] == "Item Fulfillment : Shipped"
    lines = suiteql(sb, "SELECT tl.transaction, BUILTIN.DF(tl.item) sku, tl.quantity, tl.quantityshiprecv "
                        "FROM transactionline tl WHERE tl.transaction = 9002").json()["items"]
    assert lines == [{"links": [], "transaction": "9002", "sku": "MUG-WHT", "quantity": "2", "quantityshiprecv": "2"}]
    recent = suiteql(sb, "SELECT id FROM transaction WHERE type = 'SalesOrd' AND "
                         "lastmodifieddate >= TO_DATE('2000-01-01', 'YYYY-MM-DD') FETCH FIRST 1 ROWS ONLY").json()
    assert recent["count"] == 1 and recent["totalResults"] == 1
    stamp = suiteql(sb, "SELECT TO_CHAR(lastmodifieddate, 'YYYY-MM-DD\"T\"HH24:MI:SS') ts FROM item WHERE id = 501").json()["items"][0]
    assert len(stamp["ts"]) == 19 and stamp["ts"][10] == "T"


def test_paging_limit_offset_keyset_and_caps():
    doc = scenario_doc(generate={"skus": 25, "locations": 1, "seed": 3})
    with Sandbox(from_dict(doc), time_scale=0.01) as sb:
        page = suiteql(sb, "SELECT id FROM item ORDER BY id", limit=10, offset=10).json()
        assert page["count"] == 10 and page["offset"] == 10 and page["totalResults"] == 28 and page["hasMore"] is True
        rels = {l["rel"] for l in page["links"]}
        assert {"self", "next", "previous", "first", "last"} <= rels
        last = suiteql(sb, "SELECT id FROM item ORDER BY id", limit=10, offset=20).json()
        assert last["count"] == 8 and last["hasMore"] is False
        ids, last_id = [], 0
        while True:
            items = suiteql(sb, f"SELECT id FROM item WHERE id > {last_id} ORDER BY id FETCH FIRST 10 ROWS ONLY").json()["items"]
            if not items:
                break
            ids += [int(i["id"]) for i in items]
            last_id = ids[-1]
        assert len(ids) == 28 and ids == sorted(set(ids))
        too_big = suiteql(sb, "SELECT id FROM item", limit=1001)
        assert too_big.status_code == 400 and too_big.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"
        assert suiteql(sb, "SELECT id FROM item", limit=1000, offset=99_500).status_code == 400
        assert suiteql(sb, "SELECT nonsense FROM nowhere").status_code == 400
        assert suiteql(sb, "DELETE FROM item").status_code == 400


def test_suiteql_oracle_idioms(sb):
    def ql(q):
        r = suiteql(sb, q)
        assert r.status_code == 200, r.text
        return r.json()["items"]
    assert [r["id"] for r in ql("SELECT id FROM item WHERE ROWNUM <= 2 ORDER BY id")] == ["501", "502"]
    assert [r["id"] for r in ql("SELECT id FROM item WHERE isinactive = 'F' AND ROWNUM < 2")] == ["501"]
    assert [r["id"] for r in ql("SELECT id FROM item WHERE ROWNUM <= 5 AND isinactive = 'T'")] == ["503"]
    assert [r["id"] for r in ql("SELECT id FROM item WHERE isinactive = 'F' AND ROWNUM <= 5 AND itemid LIKE 'MUG%'")] == ["502"]
    assert ql("SELECT id FROM item WHERE ROWNUM = 1")[0]["id"] == "501"
    # the classic Oracle page: rows 2..3 of a sorted list
    page = ql("SELECT * FROM (SELECT a.*, ROWNUM rnum FROM (SELECT id FROM item ORDER BY id DESC) a "
              "WHERE ROWNUM <= 3) WHERE rnum > 1")
    assert [(r["id"], r["rnum"]) for r in page] == [("502", "2"), ("501", "3")]
    so = ql("SELECT tranid || '@' || NVL(createdfrom, 'none') tag, NVL2(createdfrom, 'y', 'n') has "
            "FROM transaction WHERE id = 9001")[0]
    assert so["tag"] == "SO9001@none" and so["has"] == "n"
    row = ql("SELECT DECODE(itemtype, 'InvtPart', 'stock', 'other') kind, CONCAT(itemid, '!') shout, "
             "LPAD(id, 6, '0') padded, TO_CHAR(SYSDATE, 'YYYY') yr FROM item WHERE id = 501")[0]
    assert row["kind"] == "stock"
    assert row["shout"] == "TEE-BLK-M!" and row["padded"] == "000501"
    assert row["yr"] == str(sb.clock.now().year)
    # date arithmetic: SYSDATE - 1 is a day ago; the items changed 2-3 h ago, the gift card a day ago
    recent = ql("SELECT id FROM item WHERE lastmodifieddate > SYSDATE - 0.5 ORDER BY id")
    assert [r["id"] for r in recent] == ["501", "502"]
    assert [r["id"] for r in ql("SELECT id FROM item WHERE lastmodifieddate >= TRUNC(SYSDATE) - 2 ORDER BY id")] == \
        ["501", "502", "503"]


def test_records(sb):
    item = ns_get(sb, "/services/rest/record/v1/inventoryItem/501").json()
    assert item["id"] == "501" and item["itemId"] == "TEE-BLK-M" and item["locations"]["items"][0]["quantityAvailable"] == 8
    assert ns_get(sb, "/services/rest/record/v1/inventoryItem/503").status_code == 404     # not an inventory item
    so = ns_get(sb, "/services/rest/record/v1/salesOrder/9001?expandSubResources=true").json()
    assert so["orderStatus"] == {"id": "B", "refName": "Pending Fulfillment"} and so["otherRefNum"] == "gid://shopify/Order/1"
    assert so["item"]["items"][0]["item"]["refName"] == "TEE-BLK-M"
    missing = ns_get(sb, "/services/rest/record/v1/salesOrder/1")
    assert missing.status_code == 404 and missing.json()["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"


def test_prefer_transient_required(sb):
    url = f"{sb.urls['erp']}/services/rest/query/v1/suiteql?limit=5&offset=0"
    r = requests.post(url, json={"q": "SELECT id FROM item"}, headers={"Authorization": netsuite_auth(sb, "POST", url)}, timeout=10)
    assert r.status_code == 400


def test_concurrency_limit_429():
    doc = scenario_doc(faults=[{"system": "erp", "operation": "suiteql", "kind": "timeout", "seconds": 1.0}])
    with Sandbox(from_dict(doc), time_scale=1.0, options={"netsuite_concurrency": 2}) as sb:
        results = []
        threads = [threading.Thread(target=lambda: results.append(suiteql(sb, "SELECT id FROM item").status_code))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 200, 429, 429]
        over = [r for r in results if r == 429]
        assert len(over) == 2
