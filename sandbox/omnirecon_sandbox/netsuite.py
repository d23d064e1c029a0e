"""NetSuite SuiteTalk REST imitation: OAuth 1.0a (HMAC-SHA256) verified for real, SuiteQL executed on an
in-memory SQLite copy of the ERP state with NetSuite table/column names, record GETs, a concurrency limit."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote

from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.http import Request, Response
from omnirecon_sandbox.system import Call, System
from omnirecon_contract.timeutil import iso, parse_ts

MAX_LIMIT = 1000
MAX_ROWS = 100_000
TIMESTAMP_SKEW_SECONDS = 300
RFC = "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5."
_TYPE_SECTION = {400: "1", 401: "2", 403: "4", 404: "5", 405: "6", 429: "30", 500: "6.1", 503: "6.4"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
SO_STATUS = {"A": "Pending Approval", "B": "Pending Fulfillment", "C": "Cancelled", "D": "Partially Fulfilled",
             "E": "Pending Billing/Partially Fulfilled", "F": "Pending Billing", "G": "Billed", "H": "Closed"}
SHIP_STATUS = {"A": "Picked", "B": "Packed", "C": "Shipped"}
TYPE_LABEL = {"SalesOrd": "Sales Order", "ItemShip": "Item Fulfillment", "InvtPart": "Inventory Item",
              "NonInvtPart": "Non-inventory Item", "Kit": "Kit/Package", "Assembly": "Assembly/Bill of Materials"}
CHANNEL_LABEL = {"shopify": "Shopify", "amazon": "Amazon", "walmart": "Walmart"}

_SCHEMA = """
CREATE TABLE item (id INTEGER PRIMARY KEY, itemid TEXT, displayname TEXT, itemtype TEXT, isinactive TEXT,
                   createddate TEXT, lastmodifieddate TEXT);
CREATE TABLE location (id INTEGER PRIMARY KEY, name TEXT, isinactive TEXT);
CREATE TABLE inventoryitemlocations (item INTEGER, location INTEGER, quantityonhand INTEGER, quantitycommitted INTEGER,
                   quantityavailable INTEGER, quantityonorder INTEGER, quantitybackordered INTEGER,
                   lastmodifieddate TEXT);
CREATE TABLE "transaction" (id INTEGER PRIMARY KEY, tranid TEXT, type TEXT, status TEXT, otherrefnum TEXT,
                   custbody_omni_channel TEXT, createddate TEXT, lastmodifieddate TEXT, trandate TEXT,
                   createdfrom INTEGER);
CREATE TABLE transactionline (id INTEGER, "transaction" INTEGER, linesequencenumber INTEGER, item INTEGER,
                   quantity INTEGER, quantityshiprecv INTEGER, mainline TEXT, isclosed TEXT);
CREATE INDEX iil_item ON inventoryitemlocations (item);
CREATE INDEX tl_tran ON transactionline ("transaction");
"""

# Internal datetime storage: sortable ISO text (UTC). SuiteQL shows raw date/time values in the account's
# date and time formats ("M/D/YYYY h:mm am", minute precision); TO_CHAR gives any other format.
_STORED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@lru_cache(maxsize=65536)
def _stored(ts: str | None) -> str | None:
    dt = parse_ts(ts) if ts else None
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _display_date(stored: str) -> str:
    dt = datetime.strptime(stored, "%Y-%m-%dT%H:%M:%SZ")
    hour = dt.hour % 12 or 12
    return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d} {'am' if dt.hour < 12 else 'pm'}"


_ORACLE_FORMAT = [("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH24", "%H"), ("MI", "%M"), ("SS", "%S")]


def _oracle_to_strftime(fmt: str) -> str:
    out, i = "", 0
    while i < len(fmt):
        if fmt[i] == '"':
            j = fmt.index('"', i + 1)
            out += fmt[i + 1:j]
            i = j + 1
            continue
        for token, repl in _ORACLE_FORMAT:
            if fmt[i:].upper().startswith(token):
                out += repl
                i += len(token)
                break
        else:
            out += fmt[i]
            i += 1
    return out


def _to_date(text, fmt) -> str | None:
    if text is None:
        return None
    dt = datetime.strptime(str(text), _oracle_to_strftime(fmt or "MM/DD/YYYY"))
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_char(value, fmt) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _STORED.match(value):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").strftime(_oracle_to_strftime(fmt or "MM/DD/YYYY"))
    return str(value)


def _df_status(tran_type, status):
    if status is None:
        return None
    if tran_type == "ItemShip":
        return f"Item Fulfillment : {SHIP_STATUS.get(status, status)}"
    return f"Sales Order : {SO_STATUS.get(status, status)}"


class SuiteQLError(Exception):
    pass


_DF = re.compile(r"BUILTIN\.DF\s*\(\s*((?:(\w+)\.)?(\w+))\s*\)", re.IGNORECASE)


_ROWNUM_CAP = re.compile(r"(\bWHERE\s+)?\bROWNUM\s*(<=|<|=)\s*(\d+)(\s+AND\b)?", re.IGNORECASE)
_AND_BEFORE = re.compile(r"\s+AND\s*$", re.IGNORECASE)


def _block_end(q: str, start: int) -> int:
    """Index of the parenthesis closing the query block that contains `start` (or the end of `q`)."""
    depth, quoted = 0, False
    for i in range(start, len(q)):
        ch = q[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            if depth == 0:
                return i
            depth -= 1
    return len(q)


def _rownum(q: str) -> str:
    """Oracle's ROWNUM: a `ROWNUM <= n` (< n, = 1) condition caps its query block (LIMIT), ROWNUM as a value is
    the row's number in its block (ROW_NUMBER() OVER ())."""
    while True:
        m = _ROWNUM_CAP.search(q)
        if not m:
            break
        where, op, n, and_after = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        cap = n if op == "<=" else (n - 1 if op == "<" else (1 if n == 1 else 0))
        head, tail = q[:m.start()], q[m.end():]
        if and_after:                      # [WHERE] ROWNUM <= n AND x  -> [WHERE] x
            head += where or ""
        elif not where:                    # WHERE x AND ROWNUM <= n  -> WHERE x
            head = _AND_BEFORE.sub("", head)
        end = _block_end(tail, 0)
        q = f"{head}{tail[:end].rstrip()} LIMIT {max(cap, 0)}{' ' if end < len(tail) else ''}{tail[end:]}"
    return re.sub(r"\bROWNUM\b", "ROW_NUMBER() OVER ()", q, flags=re.IGNORECASE)


def _date_add(stored, days) -> str | None:
    if stored is None or days is None:
        return None
    return (datetime.strptime(stored, "%Y-%m-%dT%H:%M:%SZ") + timedelta(days=float(days))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trunc(value, fmt=None):
    """TRUNC(date) is midnight of that day; TRUNC(number[, places]) drops digits."""
    if value is None:
        return None
    if isinstance(value, str) and _STORED.match(value):
        return value[:10] + "T00:00:00Z"
    places = int(fmt or 0)
    factor = 10 ** places
    return int(float(value) * factor) / factor if places else int(float(value))


def _decode(*args):
    """DECODE(expr, search1, result1, ..., [default])."""
    expr, rest = args[0], list(args[1:])
    while len(rest) >= 2:
        search, result = rest.pop(0), rest.pop(0)
        if expr == search or (expr is None and search is None):
            return result
    return rest[0] if rest else None


def _pad(left: bool):
    def pad(value, width, fill=" "):
        if value is None or width is None:
            return None
        text, width, fill = str(value), int(width), str(fill) or " "
        if len(text) >= width:
            return text[:width]
        padding = (fill * width)[:width - len(text)]
        return padding + text if left else text + padding
    return pad


def translate(q: str) -> str:
    """SuiteQL (Oracle flavour) -> SQLite."""
    def df(m: re.Match) -> str:
        expr, alias, col = m.group(1), m.group(2), m.group(3).lower()
        prefix = f"{alias}." if alias else ""
        if col == "location":
            return f"(SELECT _df.name FROM location _df WHERE _df.id = {expr})"
        if col == "item":
            return f"(SELECT _df.itemid FROM item _df WHERE _df.id = {expr})"
        if col in ("createdfrom", "transaction"):
            return f"(SELECT 'Sales Order #' || _df.tranid FROM \"transaction\" _df WHERE _df.id = {expr})"
        if col == "status":
            return f"ns_df_status({prefix}type, {expr})"
        if col in ("type", "itemtype"):
            return f"ns_df_type({expr})"
        if col == "custbody_omni_channel":
            return f"ns_df_channel({expr})"
        return expr
    q = _DF.sub(df, q)
    q = re.sub(r"\bFETCH\s+(?:FIRST|NEXT)\s+(\d+)\s+ROWS?\s+ONLY\b", r"LIMIT \1", q, flags=re.IGNORECASE)
    q = _rownum(q)
    # Oracle date arithmetic: SYSDATE - 1 is a day ago (fractions are parts of a day)
    q = re.sub(r"\bSYSDATE\s*([+-])\s*(\d+(?:\.\d+)?)\b", r"ns_date_add(ns_sysdate(), \1\2)", q, flags=re.IGNORECASE)
    q = re.sub(r"\bSYSDATE\b", "ns_sysdate()", q, flags=re.IGNORECASE)
    q = re.sub(r"(?<![\w\"])transaction(?![\w\"])", '"transaction"', q, flags=re.IGNORECASE)
    return q


class NetSuiteSystem(System):
    name = "erp"

    def __init__(self, sandbox, data: dict):
        super().__init__(sandbox, data)
        self.account = data.get("account") or "1234567_SB1"
        data.setdefault("account", self.account)
        self.nonces: set = set()
        self.nonce_lock = threading.Lock()
        self.in_flight = 0
        self.in_flight_lock = threading.Lock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db_lock = threading.Lock()
        self._load()
        self.router.add("POST", "/services/rest/query/v1/suiteql", "suiteql", self.suiteql)
        self.router.add("GET", "/services/rest/record/v1/inventoryItem/{id}", "record", self.inventory_item)
        self.router.add("GET", "/services/rest/record/v1/salesOrder/{id}", "record", self.sales_order)

    # -- state -> SQLite --------------------------------------------------------------------------------------
    def _load(self) -> None:
        db, d = self.db, self.data
        db.executescript(_SCHEMA)
        for fn, n, impl in (("ns_df_status", 2, _df_status), ("ns_df_type", 1, lambda v: TYPE_LABEL.get(v, v)),
                            ("ns_df_channel", 1, lambda v: CHANNEL_LABEL.get(v, v)),
                            ("TO_DATE", 2, _to_date), ("TO_DATE", 1, lambda v: _to_date(v, None)),
                            ("TO_TIMESTAMP", 2, _to_date), ("TO_CHAR", 2, _to_char),
                            ("TO_CHAR", 1, lambda v: None if v is None else str(v)),
                            ("NVL", 2, lambda a, b: b if a is None else a),
                            ("NVL2", 3, lambda a, b, c: c if a is None else b),
                            ("DECODE", -1, _decode), ("CONCAT", 2, lambda a, b: f"{a or ''}{b or ''}"),
                            ("TRUNC", 1, _trunc), ("TRUNC", 2, _trunc), ("LPAD", 2, _pad(True)),
                            ("LPAD", 3, _pad(True)), ("RPAD", 2, _pad(False)), ("RPAD", 3, _pad(False)),
                            ("ns_date_add", 2, _date_add),
                            ("ns_sysdate", 0, lambda: iso(self.sb.clock.now()))):
            db.create_function(fn, n, impl, deterministic=fn not in ("ns_sysdate",))
        loc_ids = {}
        for loc in d.setdefault("locations", []):
            loc_ids[loc["name"]] = loc["id"]
        db.executemany("INSERT INTO location VALUES (?, ?, 'F')", [(l["id"], l["name"]) for l in d["locations"]])
        self.items = {i["id"]: i for i in d.setdefault("items", [])}
        sku_ids = {i["itemid"]: i["id"] for i in d["items"]}
        db.executemany("INSERT INTO item VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (i["id"], i["itemid"], i["itemid"], i.get("type", "InvtPart"), "T" if i.get("isinactive") else "F",
             _stored(i.get("last_modified")), _stored(i.get("last_modified"))) for i in d["items"]])
        rows = []
        for i in d["items"]:
            for loc in i.get("locations", []):
                on_hand, committed = int(loc.get("on_hand", 0)), int(loc.get("committed", 0))
                rows.append((i["id"], loc_ids.get(loc["location"]), on_hand, committed, on_hand - committed,
                             int(loc.get("on_order", 0)), max(0, committed - on_hand),
                             _stored(loc.get("last_modified") or i.get("last_modified"))))
        db.executemany("INSERT INTO inventoryitemlocations VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        trans, lines = [], []
        self.sales_orders = {s["id"]: s for s in d.setdefault("sales_orders", [])}
        for so in d["sales_orders"]:
            created, modified = _stored(so.get("created")), _stored(so.get("last_modified") or so.get("created"))
            trans.append((so["id"], so.get("tranid") or f"SO{so['id']}", "SalesOrd", so["status"],
                          so["channel_order_id"], so["channel"], created, modified, created, None))
            for n, line in enumerate(so.get("lines", [])):
                lines.append((n + 1, so["id"], n + 1, sku_ids.get(line["sku"]), int(line["quantity"]),
                              int(line.get("quantity_fulfilled", 0)), "F", "F"))
            for f in so.get("fulfillments", []):
                shipped = _stored(f.get("shipped_at")) or modified
                trans.append((f["id"], f"IF{f['id']}", "ItemShip", "C", so["channel_order_id"], so["channel"],
                              shipped, shipped, shipped, so["id"]))
                for n, line in enumerate(so.get("lines", [])):
                    lines.append((n + 1, f["id"], n + 1, sku_ids.get(line["sku"]),
                                  int(line.get("quantity_fulfilled", line["quantity"])), 0, "F", "F"))
        db.executemany('INSERT INTO "transaction" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', trans)
        db.executemany("INSERT INTO transactionline VALUES (?, ?, ?, ?, ?, ?, ?, ?)", lines)
        db.commit()
        self._index_state()

    # -- state changes (inventory movements, sales orders from the channels, fulfilments) -------------------------
    def _index_state(self) -> None:
        self.by_sku = {i["itemid"]: i for i in self.data["items"]}
        self.loc_ids = {l["name"]: l["id"] for l in self.data["locations"]}
        self.so_by_channel_order = {s["channel_order_id"]: s for s in self.data["sales_orders"]}
        ids = [s["id"] for s in self.data["sales_orders"]] + [f["id"] for s in self.data["sales_orders"]
                                                               for f in s.get("fulfillments", [])]
        self._next_tran = max(ids + [100000])

    def available(self, sku: str, location: str) -> int:
        """on_hand - committed of one SKU at one ERP location (0 where it is not stocked)."""
        item = self.by_sku.get(sku)
        loc = next((l for l in (item or {}).get("locations", []) if l["location"] == location), None)
        return int(loc.get("on_hand", 0)) - int(loc.get("committed", 0)) if loc else 0

    def adjust(self, sku: str, location: str, on_hand: int = 0, committed: int = 0) -> bool:
        """An inventory movement (adjustment, receipt, commitment) at one location, in the record and SuiteQL."""
        item = self.by_sku.get(sku)
        if item is None or location not in self.loc_ids:
            return False
        now = self.stamp()
        with self.sb.lock:
            locs = item.setdefault("locations", [])
            loc = next((l for l in locs if l["location"] == location), None)
            if loc is None:
                loc = {"location": location, "on_hand": 0, "committed": 0, "on_order": 0}
                locs.append(loc)
                with self.db_lock:
                    self.db.execute("INSERT INTO inventoryitemlocations VALUES (?, ?, 0, 0, 0, 0, 0, ?)",
                                    (item["id"], self.loc_ids[location], _stored(now)))
            loc["on_hand"] = max(0, int(loc.get("on_hand", 0)) + on_hand)
            loc["committed"] = max(0, int(loc.get("committed", 0)) + committed)
            loc["last_modified"] = item["last_modified"] = now
            oh, cm = loc["on_hand"], loc["committed"]
            with self.db_lock:
                self.db.execute("UPDATE inventoryitemlocations SET quantityonhand = ?, quantitycommitted = ?, "
                                "quantityavailable = ?, quantitybackordered = ?, lastmodifieddate = ? "
                                "WHERE item = ? AND location = ?",
                                (oh, cm, oh - cm, max(0, cm - oh), _stored(now), item["id"], self.loc_ids[location]))
                self.db.execute("UPDATE item SET lastmodifieddate = ? WHERE id = ?", (_stored(now), item["id"]))
                self.db.commit()
        self.world_changed(INVENTORY, sku=sku, location=location, value=oh - cm,
                           detail={"on_hand": on_hand, "committed": committed})
        return True

    def _new_tran_id(self) -> int:
        self._next_tran += 1
        return self._next_tran

    def add_sales_order(self, channel: str, channel_order_id: str, lines: list[dict], location: str) -> dict | None:
        """A channel order arrives: sales order status B, its units committed at `location`."""
        if channel_order_id in self.so_by_channel_order:
            return None
        now = self.stamp()
        with self.sb.lock:
            sid = self._new_tran_id()
            so = {"id": sid, "tranid": f"SO{sid}", "channel": channel, "channel_order_id": channel_order_id,
                  "status": "B", "created": now, "last_modified": now, "x_location": location,
                  "lines": [{"sku": l["sku"], "quantity": int(l["quantity"]), "quantity_fulfilled": 0} for l in lines],
                  "fulfillments": []}
            self.data["sales_orders"].append(so)
            self.sales_orders[sid] = so
            self.so_by_channel_order[channel_order_id] = so
            with self.db_lock:
                self.db.execute('INSERT INTO "transaction" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                                (sid, so["tranid"], "SalesOrd", "B", channel_order_id, channel, _stored(now),
                                 _stored(now), _stored(now), None))
                self.db.executemany("INSERT INTO transactionline VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                    [(n + 1, sid, n + 1, (self.by_sku.get(l["sku"]) or {}).get("id"),
                                      l["quantity"], 0, "F", "F") for n, l in enumerate(so["lines"])])
                self.db.commit()
        for line in so["lines"]:
            self.adjust(line["sku"], location, committed=line["quantity"])
        self.world_changed(ORDER_CREATED, order=channel_order_id, detail={"channel": channel, "id": sid})
        return so

    def _set_status(self, so: dict, status: str, now: str) -> None:
        so["status"], so["last_modified"] = status, now
        with self.db_lock:
            self.db.execute('UPDATE "transaction" SET status = ?, lastmodifieddate = ? WHERE id = ?',
                            (status, _stored(now), so["id"]))
            self.db.commit()

    def fulfil(self, channel_order_id: str) -> bool:
        """An item fulfilment ships the whole order: on_hand and committed drop, status F (pending billing)."""
        so = self.so_by_channel_order.get(channel_order_id)
        if so is None or so["status"] not in ("A", "B", "D", "E"):
            return False
        location, now = self._so_location(so), self.stamp()
        with self.sb.lock:
            fid = self._new_tran_id()
            so.setdefault("fulfillments", []).append({"id": fid, "shipped_at": now})
            for line in so["lines"]:
                line["quantity_fulfilled"] = line["quantity"]
            self._set_status(so, "F", now)
            with self.db_lock:
                self.db.execute('INSERT INTO "transaction" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                                (fid, f"IF{fid}", "ItemShip", "C", channel_order_id, so["channel"], _stored(now),
                                 _stored(now), _stored(now), so["id"]))
                self.db.executemany("INSERT INTO transactionline VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                    [(n + 1, fid, n + 1, (self.by_sku.get(l["sku"]) or {}).get("id"),
                                      l["quantity"], 0, "F", "F") for n, l in enumerate(so["lines"])])
                self.db.execute("UPDATE transactionline SET quantityshiprecv = quantity WHERE \"transaction\" = ?",
                                (so["id"],))
                self.db.commit()
        for line in so["lines"]:
            self.adjust(line["sku"], location, on_hand=-line["quantity"], committed=-line["quantity"])
        self.world_changed(ORDER_FULFILLED, order=channel_order_id, detail={"channel": so["channel"], "id": so["id"]})
        return True

    def cancel_sales_order(self, channel_order_id: str) -> bool:
        so = self.so_by_channel_order.get(channel_order_id)
        if so is None or so["status"] not in ("A", "B"):
            return False
        with self.sb.lock:
            self._set_status(so, "C", self.stamp())
        for line in so["lines"]:
            self.adjust(line["sku"], self._so_location(so), committed=-line["quantity"])
        self.world_changed(ORDER_CANCELLED, order=channel_order_id, detail={"channel": so["channel"], "id": so["id"]})
        return True

    def _so_location(self, so: dict) -> str:
        return so.get("x_location") or next(iter(self.loc_ids), "")

    # -- System hooks -------------------------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str, **extra) -> Response:
        detail = {"detail": message, "o:errorCode": code}
        detail.update(extra)
        return Response.json({"type": RFC + _TYPE_SECTION.get(status, "1"), "title": _TITLES.get(status, "Error"),
                              "status": status, "o:errorDetails": [detail]}, status,
                             {"Content-Type": "application/vnd.oracle.resource+json; type=error"})

    def throttled(self, operations: list[str]) -> Response:
        return self._concurrency_error()

    def _concurrency_error(self) -> Response:
        return self.error(429, "CONCURRENCY_LIMIT_EXCEEDED",
                          "Concurrent request limit exceeded. Request blocked.")

    def _invalid_login(self) -> Response:
        return self.error(401, "INVALID_LOGIN",
                          "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
                          "Setup > Users/Roles > User Management > View Login Audit Trail.")

    def expire_token(self, req: Request) -> Response:
        return self._invalid_login()

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_sandbox/"):
            return super().handle(req)
        with self.in_flight_lock:
            if self.in_flight >= self.sb.options.netsuite_concurrency:
                return self._concurrency_error()
            self.in_flight += 1
        try:
            return super().handle(req)
        finally:
            with self.in_flight_lock:
                self.in_flight -= 1

    # -- OAuth 1.0a -------------------------------------------------------------------------------------------------
    def _authenticate(self, req: Request) -> bool:
        header = req.header("authorization") or ""
        if not header.startswith("OAuth "):
            return False
        params = {k: unquote(v) for k, v in re.findall(r'([\w]+)="([^"]*)"', header[6:])}
        creds = self.sb.credentials
        required = ("oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_timestamp", "oauth_nonce",
                    "oauth_signature")
        if any(k not in params for k in required):
            return False
        if (params.get("realm") != self.account or params["oauth_consumer_key"] != creds.netsuite_consumer_key
                or params["oauth_token"] != creds.netsuite_token_id or params["oauth_signature_method"] != "HMAC-SHA256"
                or params.get("oauth_version", "1.0") != "1.0"):
            return False
        try:
            stamp = int(params["oauth_timestamp"])
        except ValueError:
            return False
        if abs(time.time() - stamp) > TIMESTAMP_SKEW_SECONDS:   # against the client's wall clock, not the world's
            return False
        expected = oauth_signature(req.method, f"http://{req.header('host')}{req.path}", req.raw_query,
                                   {k: v for k, v in params.items() if k not in ("realm", "oauth_signature")},
                                   creds.netsuite_consumer_secret, creds.netsuite_token_secret)
        if not hmac.compare_digest(expected, params["oauth_signature"]):
            return False
        with self.nonce_lock:
            key = (params["oauth_nonce"], stamp)
            if key in self.nonces:
                return False
            self.nonces.add(key)
        return True

    # -- SuiteQL ----------------------------------------------------------------------------------------------------
    def suiteql(self, call: Call) -> Response:
        req = call.req
        if not self._authenticate(req):
            return self._invalid_login()
        if "transient" not in (req.header("prefer") or "").lower():
            return self.error(400, "INVALID_HEADER", "SuiteQL requests need the header 'Prefer: transient'.",
                              **{"o:errorHeader": "Prefer"})
        try:
            limit = int(req.arg("limit", str(MAX_LIMIT)))
            offset = int(req.arg("offset", "0"))
        except ValueError:
            return self.error(400, "INVALID_PARAMETER", "The limit and offset query parameters must be integers.")
        if not 1 <= limit <= MAX_LIMIT:
            return self.error(400, "INVALID_PARAMETER", f"Invalid value for query parameter limit: {limit}. "
                              f"The value must be between 1 and {MAX_LIMIT}.", **{"o:errorQueryParam": "limit"})
        if offset < 0 or offset + limit > MAX_ROWS:
            return self.error(400, "INVALID_PARAMETER", f"Invalid value for query parameter offset: {offset}. "
                              f"The sum of offset and limit must not exceed {MAX_ROWS}.", **{"o:errorQueryParam": "offset"})
        try:
            body = req.json() or {}
            q = body["q"]
        except (ValueError, KeyError, TypeError):
            return self.error(400, "INVALID_CONTENT", "The request body must be JSON with the SuiteQL text under 'q'.")
        try:
            total, columns, rows = self._run(q, limit, offset)
        except SuiteQLError as e:
            return self.error(400, "INVALID_PARAMETER", f"Invalid search query. Detailed unprocessed description "
                              f"follows. Search error occurred: {e}")
        items = []
        for row in rows:
            item = {"links": []}
            for col, value in zip(columns, row):
                if value is None:
                    continue
                if isinstance(value, str) and _STORED.match(value):
                    value = _display_date(value)
                elif isinstance(value, float) and value.is_integer():
                    value = int(value)
                item[col] = str(value)
            items.append(item)
        base = f"{req.base_url}/services/rest/query/v1/suiteql"
        has_more = offset + len(items) < total
        links = [{"rel": "self", "href": f"{base}?limit={limit}&offset={offset}"}]
        if offset > 0:
            links.insert(0, {"rel": "previous", "href": f"{base}?limit={limit}&offset={max(0, offset - limit)}"})
            links.insert(0, {"rel": "first", "href": f"{base}?limit={limit}&offset=0"})
        if has_more:
            last = ((total - 1) // limit) * limit
            links.append({"rel": "next", "href": f"{base}?limit={limit}&offset={offset + limit}"})
            links.append({"rel": "last", "href": f"{base}?limit={limit}&offset={last}"})
        return Response.json({"links": links, "count": len(items), "hasMore": has_more, "items": items,
                              "offset": offset, "totalResults": total})

    def _run(self, q: str, limit: int, offset: int) -> tuple[int, list[str], list]:
        text = q.strip().rstrip(";")
        if not re.match(r"^(SELECT|WITH)\b", text, re.IGNORECASE) or ";" in text:
            raise SuiteQLError("only a single SELECT statement is allowed")
        sql = translate(text)
        with self.db_lock:
            try:
                total = self.db.execute(f"SELECT COUNT(*) FROM ({sql})").fetchone()[0]
                cur = self.db.execute(f"SELECT * FROM ({sql}) LIMIT ? OFFSET ?", (limit, offset))
                columns = [c[0].lower().split(".")[-1] for c in cur.description]
                columns = [c if re.match(r"^\w+$", c) else f"expr{n + 1}" for n, c in enumerate(columns)]
                return min(total, MAX_ROWS), columns, cur.fetchall()
            except (sqlite3.Error, ValueError) as e:
                raise SuiteQLError(str(e)) from None

    # -- record API -----------------------------------------------------------------------------------------------
    def _record_links(self, req: Request, kind: str, rid) -> list:
        return [{"rel": "self", "href": f"{req.base_url}/services/rest/record/v1/{kind}/{rid}"}]

    def _nonexistent(self) -> Response:
        return self.error(404, "NONEXISTENT_ID", "The record instance does not exist. Provide a valid record instance ID.")

    def inventory_item(self, call: Call, id: str) -> Response:
        if not self._authenticate(call.req):
            return self._invalid_login()
        item = self.items.get(int(id)) if id.isdigit() else None
        if item is None or item.get("type", "InvtPart") != "InvtPart":
            return self._nonexistent()
        names = {l["name"]: l["id"] for l in self.data.get("locations", [])}
        locs = [{"locationId": {"id": str(names.get(l["location"], "")), "refName": l["location"]},
                 "quantityOnHand": l.get("on_hand", 0), "quantityCommitted": l.get("committed", 0),
                 "quantityAvailable": l.get("on_hand", 0) - l.get("committed", 0),
                 "quantityOnOrder": l.get("on_order", 0)} for l in item.get("locations", [])]
        body = {"links": self._record_links(call.req, "inventoryItem", id), "id": str(item["id"]),
                "itemId": item["itemid"], "displayName": item["itemid"], "isInactive": bool(item.get("isinactive")),
                "itemType": {"id": "InvtPart", "refName": "Inventory Item"},
                "lastModifiedDate": _stored(item.get("last_modified")),
                "locations": {"links": self._record_links(call.req, f"inventoryItem/{id}", "locations"),
                              "items": locs, "totalResults": len(locs)}}
        return Response.json({k: v for k, v in body.items() if v is not None})

    def sales_order(self, call: Call, id: str) -> Response:
        if not self._authenticate(call.req):
            return self._invalid_login()
        so = self.sales_orders.get(int(id)) if id.isdigit() else None
        if so is None:
            return self._nonexistent()
        sku_ids = {i["itemid"]: i["id"] for i in self.data.get("items", [])}
        lines = [{"line": n + 1, "item": {"id": str(sku_ids.get(l["sku"], "")), "refName": l["sku"]},
                  "quantity": l["quantity"], "quantityFulfilled": l.get("quantity_fulfilled", 0)}
                 for n, l in enumerate(so.get("lines", []))]
        body = {"links": self._record_links(call.req, "salesOrder", id), "id": str(so["id"]),
                "tranId": so.get("tranid") or f"SO{so['id']}",
                "orderStatus": {"id": so["status"], "refName": SO_STATUS.get(so["status"], so["status"])},
                "status": {"id": SO_STATUS.get(so["status"], so["status"]), "refName": SO_STATUS.get(so["status"], so["status"])},
                "otherRefNum": so["channel_order_id"], "custbody_omni_channel": so["channel"],
                "createdDate": _stored(so.get("created")), "lastModifiedDate": _stored(so.get("last_modified")),
                "tranDate": (_stored(so.get("created")) or "")[:10] or None,
                "item": {"links": self._record_links(call.req, f"salesOrder/{id}", "item")}}
        if (call.req.arg("expandSubResources") or "").lower() == "true":
            body["item"].update({"items": lines, "totalResults": len(lines)})
        return Response.json({k: v for k, v in body.items() if v is not None})


def _pct(value: str) -> str:
    return quote(str(value), safe="~-._")


def oauth_signature(method: str, base_url: str, raw_query: str, oauth_params: dict, consumer_secret: str,
                    token_secret: str) -> str:
    """RFC 5849 section 3.4 signature with HMAC-SHA256 (NetSuite TBA)."""
    pairs = [(k, v) for k, v in parse_qsl(raw_query, keep_blank_values=True)] + list(oauth_params.items())
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_pct(k), _pct(v)) for k, v in pairs))
    base = "&".join([method.upper(), _pct(base_url), _pct(normalized)])
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
