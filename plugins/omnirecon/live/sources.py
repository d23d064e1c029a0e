"""How each platform signs and identifies its change notifications, checked on the raw body.

Each source turns (raw body, headers) into an `Incoming` (platform event id, topic, when it happened) or raises
`Rejected` with the HTTP status to answer and a reason. Nothing is parsed before the signature holds.
Secrets come from the systems' Airflow connections (see `sources_from_connections`), never from code.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from omnirecon.live.inbox import Incoming
from omnirecon.timeutil import parse_ts, utcnow

SHOPIFY_ROTATION_GRACE = timedelta(hours=1)      # a rotated Shopify secret is still accepted this long
NETSUITE_MAX_SKEW = timedelta(minutes=5)         # a SuiteScript delivery older than this is a replay


class Rejected(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _header(headers, name: str) -> str | None:
    """Headers match case-insensitively (HTTP), whatever mapping the server hands over."""
    want = name.lower()
    for k, v in headers.items():
        if k.lower() == want:
            return v
    return None


def _json(raw: bytes) -> dict:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Rejected(400, "body is not a JSON object")
    return doc


def _ts(value) -> datetime | None:
    try:
        return parse_ts(value) if value else None
    except (ValueError, TypeError):
        return None


def _b64_hmac(secret: str, raw: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


@dataclass
class ShopifySource:
    """X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(client secret, raw body)); de-duplicated on X-Shopify-Webhook-Id."""
    secret: str
    previous_secret: str | None = None
    rotated_at: datetime | None = None      # when `secret` replaced `previous_secret`
    name: str = "shopify"

    def secrets(self, now: datetime) -> list[str]:
        out = [self.secret]
        if self.previous_secret and self.rotated_at and now - self.rotated_at <= SHOPIFY_ROTATION_GRACE:
            out.append(self.previous_secret)
        return out

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        given = _header(headers, "X-Shopify-Hmac-Sha256")
        if not given:
            raise Rejected(401, "missing X-Shopify-Hmac-Sha256")
        if not any(hmac.compare_digest(_b64_hmac(s, raw), given.strip()) for s in self.secrets(now or utcnow())):
            raise Rejected(401, "X-Shopify-Hmac-Sha256 does not match the body")
        topic, webhook_id = _header(headers, "X-Shopify-Topic"), _header(headers, "X-Shopify-Webhook-Id")
        if not topic or not webhook_id:
            raise Rejected(400, "missing X-Shopify-Topic or X-Shopify-Webhook-Id")
        _json(raw)
        keep = {k: _header(headers, k) for k in ("X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-API-Version",
                                                 "X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At")}
        return Incoming(self.name, webhook_id, topic, raw, _ts(_header(headers, "X-Shopify-Triggered-At")),
                        {k: v for k, v in keep.items() if v})


@dataclass
class WalmartSource:
    """The subscription's authDetails on every delivery: HMAC (HMAC-SHA256 of the body keyed with the client
    secret, base64 or hex) or BASIC_AUTH (base64 of user:password), in `auth_header`; de-duplicated on
    source.eventId of the envelope {"source": {eventType, eventTime, eventId}, "payload": {...}}."""
    client_secret: str
    auth_method: str = "HMAC"               # HMAC | BASIC_AUTH
    auth_header: str = "Authorization"
    user: str | None = None
    password: str | None = None
    name: str = "walmart"

    def _authorised(self, raw: bytes, given: str) -> bool:
        given = given.strip()
        if self.auth_method == "BASIC_AUTH":
            if not self.user or self.password is None:
                return False
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return any(hmac.compare_digest(given, v) for v in (token, f"Basic {token}"))
        digest = hmac.new(self.client_secret.encode(), raw, hashlib.sha256).digest()
        return any(hmac.compare_digest(given, v) for v in (base64.b64encode(digest).decode(), digest.hex()))

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        given = _header(headers, self.auth_header)
        if not given:
            raise Rejected(401, f"missing {self.auth_header}")
        if not self._authorised(raw, given):
            raise Rejected(401, f"{self.auth_header} does not authenticate the body ({self.auth_method})")
        doc = _json(raw)
        src = doc.get("source")
        if not isinstance(src, dict) or not src.get("eventId") or not src.get("eventType"):
            raise Rejected(400, "envelope without source.eventId / source.eventType")
        return Incoming(self.name, str(src["eventId"]), str(src["eventType"]), raw, _ts(src.get("eventTime")),
                        {"eventType": src["eventType"], "eventId": str(src["eventId"])})


@dataclass
class NetSuiteSource:
    """omnirecon's SuiteScript (include/netsuite/): X-Omnirecon-Timestamp (unix seconds, or ISO-8601) and
    X-Omnirecon-Signature = "sha256=" + hex HMAC-SHA256(deployment secret, timestamp + "." + raw body). The event is
    the body's `eventId` when it has one, else recordType:id:type:timestamp plus a digest of the body (a user-event
    script that posts the same message twice posts the same bytes)."""
    secret: str
    max_skew: timedelta = field(default=NETSUITE_MAX_SKEW)
    name: str = "erp"

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        stamp, given = _header(headers, "X-Omnirecon-Timestamp"), _header(headers, "X-Omnirecon-Signature")
        if not stamp or not given:
            raise Rejected(401, "missing X-Omnirecon-Timestamp or X-Omnirecon-Signature")
        want = "sha256=" + hmac.new(self.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, given.strip()):
            raise Rejected(401, "X-Omnirecon-Signature does not match the body")
        at = _ts(int(stamp) * 1000) if stamp.strip().isdigit() else _ts(stamp)
        if at is None or abs((now or utcnow()) - at) > self.max_skew:
            raise Rejected(401, "X-Omnirecon-Timestamp outside the allowed window (a replay?)")
        doc = _json(raw)
        if not doc.get("recordType"):
            raise Rejected(400, "body without recordType")
        event_id = doc.get("eventId") or (f"{doc['recordType']}:{doc.get('id')}:{doc.get('type', 'edit')}:"
                                          f"{doc.get('timestamp')}:{hashlib.sha256(raw).hexdigest()[:16]}")
        return Incoming(self.name, str(event_id), f"{doc['recordType']}/{doc.get('type', 'edit')}", raw,
                        _ts(doc.get("timestamp")) or at, {"recordType": doc["recordType"]})


def sources_from_connections(get_connection=None, conn_ids: dict | None = None) -> dict:
    """The sources whose secrets the systems' Airflow connections hold, by receiver path name.

    - omnirecon_shopify: extra `client_secret` (the app's), optional `previous_client_secret` and
      `client_secret_rotated_at` (ISO-8601) during a rotation;
    - omnirecon_walmart: password = client secret; extra `webhook_auth_method` (HMAC | BASIC_AUTH),
      `webhook_auth_header`, `webhook_user`, `webhook_password` as given in the subscription's authDetails;
    - omnirecon_netsuite: extra `webhook_secret` (the SuiteScript deployment's parameter).
    A system without its secret is simply not served (its deliveries get 404)."""
    from omnirecon.hooks import CONN_IDS
    if get_connection is None:
        from airflow.sdk import BaseHook
        get_connection = BaseHook.get_connection
    ids = conn_ids or CONN_IDS
    out: dict = {}

    from airflow.sdk.exceptions import AirflowNotFoundException

    def conn(system):
        try:
            return get_connection(ids[system])
        except AirflowNotFoundException:   # not connected: not served; any other failure is loud
            return None

    c = conn("shopify")
    if c is not None and (c.extra_dejson or {}).get("client_secret"):
        x = c.extra_dejson
        out["shopify"] = ShopifySource(x["client_secret"], x.get("previous_client_secret"),
                                       _ts(x.get("client_secret_rotated_at")))
    c = conn("walmart")
    if c is not None and c.password:
        x = c.extra_dejson or {}
        out["walmart"] = WalmartSource(c.password, x.get("webhook_auth_method", "HMAC"),
                                       x.get("webhook_auth_header", "Authorization"), x.get("webhook_user"),
                                       x.get("webhook_password"))
    c = conn("erp")
    if c is not None and (c.extra_dejson or {}).get("webhook_secret"):
        out["erp"] = NetSuiteSource(c.extra_dejson["webhook_secret"])
    return out
