"""Amazon Selling Partner API hook (reference/channel-apis.md §2, official models in sp-api-models/).

LWA refresh-token grant with a cached access token (refreshed at ~55 of its 60 minutes, and once more
on a 403 Unauthorized), per-operation token buckets from the model rates (updated from
`x-amzn-RateLimit-Limit`), NextToken paging without pauses, reports and feeds state machines.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Iterator
from urllib.parse import quote

import requests

from omnirecon.hooks.base import ApiError, MalformedResponse, Reauthenticate, TokenBucket, require
from omnirecon.hooks.connector import CachedBearerToken, ConnectorHook
from omnirecon.timeutil import iso, utcnow

# operationId -> (rate per second, burst), from the models (§2.9)
RATE_LIMITS = {
    "getOrders": (0.0167, 20), "getOrderItems": (0.5, 30), "getOrder": (0.5, 30),
    "getInventorySummaries": (2, 2),
    "getListingsItem": (5, 10), "patchListingsItem": (5, 5), "putListingsItem": (5, 10),
    "searchListingsItems": (5, 5),
    "createFeedDocument": (0.5, 15), "createFeed": (0.0083, 15), "getFeed": (2, 15),
    "getFeedDocument": (0.0222, 10),
    "createReport": (0.0167, 15), "getReport": (2, 15), "getReportDocument": (0.0167, 15),
}
LISTINGS_REPORT = "GET_MERCHANT_LISTINGS_ALL_DATA"
ORDERS_LAG = timedelta(minutes=2)   # LastUpdatedBefore must be >= 2 minutes before now


class ExpiredNextToken(Exception):
    """FBA nextToken lived longer than its 30 s: restart the listing."""


class AmazonSPAPIHook(CachedBearerToken, ConnectorHook):
    refresh_margin_s = 300.0   # refresh the 1 h LWA token at ~55 min
    non_idempotent_operations = frozenset({"createReport", "createFeedDocument", "createFeed"})
    conn_name_attr = "amazon_conn_id"
    default_conn_name = "omnirecon_amazon"
    conn_type = "omnirecon_amazon"
    hook_name = "Amazon SP-API (omnirecon)"
    system = "amazon"
    secret_extras = ("refresh_token",)

    report_poll_seconds = 15.0       # the longest wait between getReport polls (poll_wait)
    report_timeout_seconds = 3600.0
    max_listing_restarts = 3

    def __init__(self, amazon_conn_id: str | None = None, **kwargs):
        super().__init__(amazon_conn_id, **kwargs)
        self._init_token_cache()
        self._buckets: dict[str, TokenBucket] = {}
        self._buckets_lock = threading.Lock()

    @property
    def marketplace_id(self) -> str:
        return self.extra("marketplace_id", "ATVPDKIKX0DER")

    @property
    def seller_id(self) -> str:
        sid = self.extra("seller_id")
        if not sid:
            raise ValueError(f"connection {self.conn_id}: extra.seller_id is required for listings calls")
        return sid

    # -- auth -------------------------------------------------------------------------
    def _refresh_token(self) -> None:
        endpoint = self.extra("lwa_endpoint", "https://api.amazon.com/auth/o2/token")
        form = {"grant_type": "refresh_token", "refresh_token": self.extra("refresh_token") or "",
                "client_id": self.fields["login"] or "", "client_secret": self.fields["password"] or ""}
        resp = self.core.request(
            "POST", endpoint, operation="token", data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8", "Accept": "application/json"})
        body = self.core.json(resp, "token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise MalformedResponse(self.system, "token", "LWA answer has no access_token")
        self._store_token(token, float(body.get("expires_in") or 3600))

    def _reauth(self) -> None:
        self.access_token(force=True)

    def _prepare(self, call: dict, cid: str) -> None:
        call["headers"].update({"x-amz-access-token": self.access_token(), "Accept": "application/json",
                                "User-Agent": "omnirecon/0.1 (Language=Python)", "x-amzn-client-request-id": cid})

    @staticmethod
    def _inspect(resp: requests.Response) -> None:
        if resp.status_code in (401, 403):
            try:
                errors = resp.json().get("errors") or []
            except (ValueError, AttributeError):
                errors = []
            codes = {e.get("code") for e in errors if isinstance(e, dict)}
            if resp.status_code == 401 or codes & {"Unauthorized", "InvalidAccessToken", "ExpiredToken"} \
                    or not codes:
                raise Reauthenticate("access token rejected", resp.status_code)

    # -- pacing -----------------------------------------------------------------------
    def bucket(self, operation: str) -> TokenBucket:
        with self._buckets_lock:
            if operation not in self._buckets:
                rate, burst = RATE_LIMITS.get(operation, (1.0, 5))
                self._buckets[operation] = TokenBucket(rate / self.time_scale, burst)
            return self._buckets[operation]

    def _after(self, operation: str, resp: requests.Response) -> None:
        limit = resp.headers.get("x-amzn-RateLimit-Limit")
        if limit:
            try:
                self.bucket(operation).set_rate(float(limit) / self.time_scale)
            except ValueError:
                pass
        if resp.status_code == 429:
            self.bucket(operation).empty()

    def call(self, method: str, path: str, operation: str, *, params: dict | None = None,
             body: Any = None, ok_statuses: tuple = (), parse=None) -> Any:
        bucket = self.bucket(operation)

        def inspect(resp):
            self._after(operation, resp)
            self._inspect(resp)

        def pace():
            waited = bucket.acquire()
            if waited > 0.5:
                self.core.event(operation, "throttled", None, f"client rate limit: waited {waited:.2f}s")

        kwargs: dict = {"params": params}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        return self.core.request(method, self.base_url + path, operation=operation, prepare=self._prepare,
                                 inspect=inspect, reauthenticate=self._reauth, pace=pace,
                                 ok=lambda r: r.status_code < 400 or r.status_code in ok_statuses,
                                 parse=parse, **kwargs)

    def ping(self) -> None:
        self.access_token(force=True)

    # -- reports ----------------------------------------------------------------------
    def run_report(self, report_type: str, options: dict | None = None) -> bytes | None:
        """create -> poll -> document -> download (gunzip). None when Amazon cancels it for lack of data."""
        spec = {"reportType": report_type, "marketplaceIds": [self.marketplace_id]}
        if options:
            spec["reportOptions"] = options
        created = self.call_json("POST", "/reports/2021-06-30/reports", "createReport", body=spec,
                                 shape=("reportId",))
        report_id = created["reportId"]
        started = time.monotonic()
        deadline = started + self.report_timeout_seconds * self.time_scale
        while True:
            report = self.call_json("GET", f"/reports/2021-06-30/reports/{quote(str(report_id), safe='')}",
                                    "getReport", shape=("processingStatus",))
            status = report["processingStatus"]
            if status == "DONE":
                break
            if status == "CANCELLED":
                return None
            if status == "FATAL":
                raise ApiError(self.system, "getReport", f"report {report_id} ended FATAL")
            if status not in ("IN_QUEUE", "IN_PROGRESS"):
                raise MalformedResponse(self.system, "getReport", f"unknown processingStatus {status!r}")
            if time.monotonic() > deadline:
                raise ApiError(self.system, "getReport", f"report {report_id} still {status} at the time limit")
            self.poll_wait(started, self.report_poll_seconds)
        doc_id = require(report, "reportDocumentId", self.system, "getReport")
        doc = self.call_json("GET", f"/reports/2021-06-30/documents/{quote(str(doc_id), safe='')}",
                             "getReportDocument", shape=("url",))
        return self.download(doc, "getReportDocument")

    def download(self, document: dict, operation: str) -> bytes:
        url = require(document, "url", self.system, operation)
        content = self.core.request("GET", url, operation=operation + ".download").content
        if document.get("compressionAlgorithm") == "GZIP" or content[:2] == b"\x1f\x8b":
            try:
                content = gzip.decompress(content)
            except OSError:
                raise MalformedResponse(self.system, operation, "document is not valid GZIP") from None
        return content

    def listings_report(self) -> list[dict]:
        content = self.run_report(LISTINGS_REPORT)
        return parse_flat_file(content) if content else []

    # -- FBA inventory ----------------------------------------------------------------
    def fba_summaries(self) -> list[dict]:
        """Every FBA inventory summary. Pages follow each other at once (nextToken lives 30 s); an
        expired token restarts the listing from the start."""
        for attempt in range(self.max_listing_restarts + 1):
            try:
                return list(self._fba_pages())
            except ExpiredNextToken as e:
                self.core.event("getInventorySummaries", "retry", 400,
                                f"nextToken expired ({e}); restarting the listing ({attempt + 1})")
        raise ApiError(self.system, "getInventorySummaries", "nextToken kept expiring; listing abandoned")

    def _fba_pages(self) -> Iterator[dict]:
        params = {"details": "true", "granularityType": "Marketplace", "granularityId": self.marketplace_id,
                  "marketplaceIds": self.marketplace_id}
        token = None
        while True:
            page_params = dict(params, nextToken=token) if token else params
            parser = self.core.json_parser("getInventorySummaries", "payload.inventorySummaries")

            def parse(resp):
                if resp.status_code == 400:
                    return resp
                body = parser(resp)
                if not isinstance(body["payload"]["inventorySummaries"], list):
                    raise MalformedResponse(self.system, "getInventorySummaries", "inventorySummaries is not a list")
                return body
            body = self.call("GET", "/fba/inventory/v1/summaries", "getInventorySummaries", params=page_params,
                             ok_statuses=(400,) if token else (), parse=parse)
            if isinstance(body, requests.Response):
                raise ExpiredNextToken(self.core.redact(body.text[:200]))
            yield from body["payload"]["inventorySummaries"]
            token = (body.get("pagination") or {}).get("nextToken")
            if not token:
                return

    # -- listings items ---------------------------------------------------------------
    def _item_path(self, sku: str) -> str:
        return f"/listings/2021-08-01/items/{quote(self.seller_id, safe='')}/{quote(sku, safe='')}"

    def get_listing(self, sku: str, included: str = "summaries,issues") -> dict | None:
        parser = self.core.json_parser("getListingsItem", "sku")
        return self.call("GET", self._item_path(sku), "getListingsItem", ok_statuses=(404,),
                         params={"marketplaceIds": self.marketplace_id, "includedData": included},
                         parse=lambda r: None if r.status_code == 404 else parser(r))

    def fetch_listings(self) -> dict:
        """Listing report rows + FBA summaries + details (summaries, issues) of the inactive listings."""
        rows = self.listings_report()
        fba = self.fba_summaries()
        details = {}
        for row in rows:
            if (row.get("status") or "").strip().lower() != "active" and row.get("seller-sku"):
                details[row["seller-sku"]] = self.get_listing(row["seller-sku"])
        return {"report": rows, "fba": fba, "details": details}

    def product_type(self, sku: str) -> str | None:
        item = self.get_listing(sku, "summaries")
        for s in (item or {}).get("summaries") or []:
            if s.get("marketplaceId") in (None, self.marketplace_id) and s.get("productType"):
                return s["productType"]
        return None

    def patch_quantity(self, sku: str, product_type: str | None, quantity: int) -> dict:
        """Set the merchant-fulfilled (DEFAULT) quantity. ACCEPTED means queued, not applied."""
        product_type = product_type or self.product_type(sku) or "PRODUCT"
        body = {"productType": product_type, "patches": [{
            "op": "replace", "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": int(quantity)}]}]}
        params = {"marketplaceIds": self.marketplace_id, "includedData": "issues"}
        try:
            resp = self.call("PATCH", self._item_path(sku), "patchListingsItem", params=params, body=body,
                             ok_statuses=(400,))
        except ApiError as e:
            self.record_write("patchListingsItem", sku, body, e.status_code, "error", str(e))
            raise
        answer = self.core.json(resp, "patchListingsItem")
        if resp.status_code == 400:
            issues = [{"code": e.get("code"), "message": e.get("message"), "severity": "ERROR"}
                      for e in (answer.get("errors") or [])]
            result = {"status": "INVALID", "submission_id": None, "issues": issues}
        else:
            result = {"status": answer.get("status"), "submission_id": answer.get("submissionId"),
                      "issues": answer.get("issues") or []}
        self.record_write("patchListingsItem", sku, body, resp.status_code,
                          "ok" if result["status"] == "ACCEPTED" else "rejected",
                          "; ".join(f"{i.get('code')}: {i.get('message')}" for i in result["issues"]) or None)
        return result

    def read_quantity(self, sku: str) -> int | None:
        item = self.get_listing(sku, "fulfillmentAvailability")
        for fa in (item or {}).get("fulfillmentAvailability") or []:
            if fa.get("fulfillmentChannelCode") == "DEFAULT":
                return int(fa["quantity"]) if fa.get("quantity") is not None else None
        return None

    # -- feeds ------------------------------------------------------------------------
    def submit_listings_feed(self, messages: list[dict]) -> str:
        """JSON_LISTINGS_FEED: createFeedDocument, upload, createFeed. Returns the feed id."""
        numbered = [dict(m, messageId=m.get("messageId", n)) for n, m in enumerate(messages, start=1)]
        feed = {"header": {"sellerId": self.seller_id, "version": "2.0", "issueLocale": "en_US"},
                "messages": numbered}
        content_type = "application/json; charset=UTF-8"
        summary = {"feedType": "JSON_LISTINGS_FEED", "messages": len(numbered),
                   "skus": [m.get("sku") for m in numbered][:50]}
        try:
            doc = self.call_json("POST", "/feeds/2021-06-30/documents", "createFeedDocument",
                                 body={"contentType": content_type}, shape=("url", "feedDocumentId"))
            url = doc["url"]
            self.core.request("PUT", url, operation="uploadFeedDocument", data=json.dumps(feed).encode("utf-8"),
                              headers={"Content-Type": content_type})
            created = self.call_json("POST", "/feeds/2021-06-30/feeds", "createFeed", body={
                "feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [self.marketplace_id],
                "inputFeedDocumentId": doc["feedDocumentId"]}, shape=("feedId",))
            feed_id = str(created["feedId"])
        except ApiError as e:
            self.record_write("createFeed", "JSON_LISTINGS_FEED", summary, e.status_code, "error", str(e))
            raise
        self.record_write("createFeed", feed_id, summary, 202, "ok")
        return feed_id

    def feed_result(self, feed_id: str) -> dict:
        """{"feed_id", "status", "report"}: the processing report once the feed is DONE."""
        feed = self.call_json("GET", f"/feeds/2021-06-30/feeds/{quote(feed_id, safe='')}", "getFeed",
                              shape=("processingStatus",))
        status = feed["processingStatus"]
        report = None
        if status == "DONE" and feed.get("resultFeedDocumentId"):
            doc = self.call_json("GET", f"/feeds/2021-06-30/documents/{quote(feed['resultFeedDocumentId'], safe='')}",
                                 "getFeedDocument", shape=("url",))
            raw = self.download(doc, "getFeedDocument")
            try:
                report = json.loads(raw.decode("utf-8"))
            except ValueError:
                raise MalformedResponse(self.system, "getFeedDocument", "processing report is not JSON") from None
        return {"feed_id": feed_id, "status": status, "report": report}

    # -- orders -----------------------------------------------------------------------
    def orders_window_end(self, end: datetime) -> datetime:
        return min(end, utcnow() - ORDERS_LAG)

    def fetch_orders(self, start: datetime, end: datetime) -> dict:
        """getOrders by LastUpdated window (end capped at now - 2 min) + getOrderItems for each order."""
        before = self.orders_window_end(end)
        if before <= start:   # the whole window is within the last 2 minutes: nothing may be asked yet
            return {"orders": [], "window_end": start}
        params = {"MarketplaceIds": self.marketplace_id, "LastUpdatedAfter": iso(start),
                  "LastUpdatedBefore": iso(before), "MaxResultsPerPage": 100}
        orders: list[dict] = []
        token = None
        while True:
            page_params = dict(params, NextToken=token) if token else params
            body = self.call_json("GET", "/orders/v0/orders", "getOrders", params=page_params,
                                  shape=("payload.Orders",))
            payload = body["payload"]
            orders.extend(payload["Orders"] or [])
            token = payload.get("NextToken")
            if not token:
                break
        for order in orders:
            if isinstance(order, dict) and order.get("AmazonOrderId"):
                order["OrderItems"] = self.order_items(order["AmazonOrderId"])
        return {"orders": orders, "window_end": before}

    def order_items(self, order_id: str) -> list[dict]:
        items: list[dict] = []
        token = None
        path = f"/orders/v0/orders/{quote(order_id, safe='')}/orderItems"
        while True:
            body = self.call_json("GET", path, "getOrderItems", params={"NextToken": token} if token else None,
                                  shape=("payload.OrderItems",))
            payload = body["payload"]
            items.extend(payload["OrderItems"] or [])
            token = payload.get("NextToken")
            if not token:
                return items


def parse_flat_file(content: bytes) -> list[dict]:
    """Tab-delimited report -> rows (header names as keys). Decodes UTF-8 (BOM-aware), else Cp1252."""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.strip() for h in next(reader, [])]
    if "seller-sku" not in header:
        raise MalformedResponse("amazon", "getReportDocument", "listings report has no seller-sku column")
    rows, width = [], len(header)
    for values in reader:
        if values:   # short rows miss trailing fields (None), as with csv.DictReader; extra fields are dropped
            rows.append(dict(zip(header, [v.strip() for v in values[:width]] + [None] * (width - len(values)))))
    return rows
