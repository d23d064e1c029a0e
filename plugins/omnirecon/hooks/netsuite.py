"""NetSuite SuiteTalk REST hook (reference/channel-apis.md §4): TBA OAuth 1.0a HMAC-SHA256 on every
request, a concurrency semaphore, SuiteQL keyset paging (`WHERE id > :last ORDER BY id`, 1000 a page)
so a listing goes past the 100,000-row offset cap.

Queries are single-table on purpose: joins happen in Python (model/normalize.py), which keeps every
query a plain keyset scan.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from requests.models import PreparedRequest

from omnirecon.hooks.base import ApiError, MalformedResponse
from omnirecon.hooks.connector import ConnectorHook
from omnirecon.timeutil import utcnow

PAGE = 1000
ITEM_COLUMNS = "id, itemid, itemtype, isinactive, lastmodifieddate"
LEVEL_COLUMNS = ("item, location, quantityonhand, quantitycommitted, quantityavailable, quantityonorder, "
                 "lastmodifieddate")
TRANSACTION_COLUMNS = ("id, tranid, type, status, otherrefnum, custbody_omni_channel, createddate, "
                       "lastmodifieddate, trandate, createdfrom")
LINE_COLUMNS = "id, transaction, item, quantity, quantityshiprecv"


def _enc(value) -> str:
    """RFC 3986 percent-encoding as OAuth 1.0a requires (RFC 5849 §3.6)."""
    return quote(str(value), safe="~-._")


def oauth1_header(method: str, url: str, *, realm: str, consumer_key: str, consumer_secret: str,
                  token_id: str, token_secret: str, nonce: str | None = None,
                  timestamp: str | None = None, extra_params: dict | None = None) -> str:
    """`Authorization: OAuth ...` for TBA with HMAC-SHA256; query parameters are part of the base string."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    base_url = urlunsplit((scheme, netloc, parts.path or "/", "", ""))
    oauth = {"oauth_consumer_key": consumer_key, "oauth_token": token_id,
             "oauth_signature_method": "HMAC-SHA256", "oauth_timestamp": timestamp or str(int(time.time())),
             "oauth_nonce": nonce or secrets.token_hex(16), "oauth_version": "1.0"}
    params = list(parse_qsl(parts.query, keep_blank_values=True)) + list(oauth.items()) \
        + list((extra_params or {}).items())
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in params))
    base = "&".join((method.upper(), _enc(base_url), _enc(normalized)))
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}"
    signature = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode()
    fields = dict(oauth, oauth_signature=signature)
    return f'OAuth realm="{realm}", ' + ", ".join(f'{k}="{_enc(v)}"' for k, v in fields.items())


def sql_int(value) -> int:
    """An id going into SuiteQL text: must be an integer (no injection through ids)."""
    return int(str(value).strip())


def sql_ts(dt: datetime) -> str:
    """A UTC instant as a SuiteQL timestamp literal."""
    return f"TO_TIMESTAMP('{dt.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')}', 'YYYY-MM-DD HH24:MI:SS')"


class NetSuiteHook(ConnectorHook):
    conn_name_attr = "netsuite_conn_id"
    default_conn_name = "omnirecon_netsuite"
    conn_type = "omnirecon_netsuite"
    hook_name = "NetSuite SuiteTalk REST (omnirecon)"
    system = "erp"
    secret_extras = ("token_secret", "token_id")

    def __init__(self, netsuite_conn_id: str | None = None, concurrency: int | None = None, **kwargs):
        super().__init__(netsuite_conn_id, **kwargs)
        self._concurrency = concurrency
        self._semaphore: threading.BoundedSemaphore | None = None

    @property
    def semaphore(self) -> threading.BoundedSemaphore:
        if self._semaphore is None:
            self._semaphore = threading.BoundedSemaphore(int(self._concurrency or self.extra("concurrency", 4)))
        return self._semaphore

    def _prepare(self, method: str, url: str):
        def prepare(call: dict, cid: str) -> None:
            signed = PreparedRequest()
            signed.prepare_url(url, call.get("params"))
            call["headers"]["Authorization"] = oauth1_header(
                method, signed.url, realm=self.extra("account", ""), consumer_key=self.fields["login"] or "",
                consumer_secret=self.fields["password"] or "", token_id=self.extra("token_id", ""),
                token_secret=self.extra("token_secret", ""))
            call["headers"].update({"Accept": "application/json", "X-Request-Id": cid})
        return prepare

    def call(self, method: str, path: str, operation: str, *, params: dict | None = None, json_body=None,
             headers: dict | None = None, ok_statuses: tuple = (), parse=None):
        url = self.base_url + path
        with self.semaphore:
            return self.core.request(method, url, operation=operation, prepare=self._prepare(method, url),
                                     params=params, json=json_body, headers=headers, parse=parse,
                                     ok=lambda r: r.status_code < 400 or r.status_code in ok_statuses)

    def ping(self) -> None:
        self.suiteql("SELECT id FROM location", limit=1)

    # -- SuiteQL ----------------------------------------------------------------------
    def suiteql(self, q: str, limit: int = PAGE, offset: int = 0) -> dict:
        """One SuiteQL page: {"items", "hasMore", ...}. Column names come back lowercase."""
        def parse(resp):
            body = self.core.json_parser("suiteql", "items")(resp)
            if not isinstance(body["items"], list):
                raise MalformedResponse(self.system, "suiteql", "items is not a list", resp.status_code)
            return body
        return self.call("POST", "/services/rest/query/v1/suiteql", "suiteql",
                         params={"limit": limit, "offset": offset}, json_body={"q": q},
                         headers={"Prefer": "transient", "Content-Type": "application/json"}, parse=parse)

    def keyset(self, select: str, table: str, *, key: str = "id", where: str | None = None,
               order_extra: str = "") -> Iterator[dict]:
        """Every row of `SELECT {select} FROM {table}` in pages of 1000, keyset on integer column `key`.

        With `order_extra` (a second sort column) several rows may share a key value; a full page then
        drops its last key group and asks again from the key before it, so no row is skipped or repeated.
        """
        last = None
        while True:
            cond = [f"{key} > {last}"] if last is not None else []
            if where:
                cond.append(f"({where})")
            q = f"SELECT {select} FROM {table}" + (f" WHERE {' AND '.join(cond)}" if cond else "") \
                + f" ORDER BY {key}" + (f", {order_extra}" if order_extra else "")
            page = self.suiteql(q, limit=PAGE, offset=0)
            rows = page["items"]
            full = bool(page.get("hasMore")) or len(rows) >= PAGE
            if not rows:
                return
            try:
                keys = [sql_int(r[key]) for r in rows]
            except (KeyError, TypeError, ValueError):
                raise MalformedResponse(self.system, "suiteql", f"a row of {table} misses integer `{key}`") from None
            if full and order_extra:
                boundary = keys[-1]
                kept = [r for r, k in zip(rows, keys) if k != boundary]
                if not kept:
                    raise ApiError(self.system, "suiteql", f"more than {PAGE} {table} rows share {key}={boundary}")
                rows, last = kept, max(k for k in keys if k != boundary)
            else:
                last = keys[-1]
            for r in rows:
                r.pop("links", None)
            yield from rows
            if not full:
                return

    def rows_by_ids(self, select: str, table: str, column: str, ids, *, key: str = "id",
                    extra_where: str | None = None) -> list[dict]:
        """Rows whose `column` is in `ids` (chunks of 500), each chunk keyset-paged."""
        ids = sorted({sql_int(i) for i in ids})
        out: list[dict] = []
        for i in range(0, len(ids), 500):
            where = f"{column} IN ({', '.join(map(str, ids[i:i + 500]))})"
            if extra_where:
                where = f"{where} AND {extra_where}"
            out.extend(self.keyset(select, table, key=key, where=where))
        return out

    # -- snapshots --------------------------------------------------------------------
    def fetch_items(self) -> list[dict]:
        return list(self.keyset(ITEM_COLUMNS, "item"))

    def fetch_locations(self) -> list[dict]:
        return list(self.keyset("id, name", "location"))

    def fetch_inventory(self) -> dict:
        """Item master, locations and every item x location quantity row. The three keyset scans are
        independent, so they run side by side (within the account's concurrency limit)."""
        from concurrent.futures import ThreadPoolExecutor
        _ = self.semaphore, self.core    # create the shared limiter and session before the threads do
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="suiteql") as pool:
            items = pool.submit(self.fetch_items)
            locations = pool.submit(self.fetch_locations)
            levels = pool.submit(lambda: list(self.keyset(LEVEL_COLUMNS, "inventoryitemlocations", key="item",
                                                          order_extra="location")))
            return {"items": items.result(), "locations": locations.result(), "levels": levels.result()}

    def fetch_orders(self, start: datetime, end: datetime) -> dict:
        """Sales orders modified in [start, end), their lines, their item fulfilments and the items they name."""
        window = (f"type = 'SalesOrd' AND lastmodifieddate >= {sql_ts(start)} "
                  f"AND lastmodifieddate < {sql_ts(end)}")
        orders = list(self.keyset(TRANSACTION_COLUMNS, "transaction", where=window))
        ids = [o["id"] for o in orders]
        lines = self.rows_by_ids(LINE_COLUMNS, "transactionline", "transaction", ids) if ids else []
        shipments = self.rows_by_ids(TRANSACTION_COLUMNS, "transaction", "createdfrom", ids,
                                     extra_where="type = 'ItemShip'") if ids else []
        item_ids = {l["item"] for l in lines if l.get("item") not in (None, "")}
        items = self.rows_by_ids("id, itemid", "item", "id", item_ids) if item_ids else []
        return {"orders": orders, "lines": lines, "shipments": shipments, "items": items,
                "fetched_at": utcnow()}

    def record(self, record_type: str, record_id) -> dict | None:
        parser = self.core.json_parser("record")
        return self.call("GET", f"/services/rest/record/v1/{quote(record_type, safe='')}/{sql_int(record_id)}",
                         "record", ok_statuses=(404,), parse=lambda r: None if r.status_code == 404 else parser(r))
