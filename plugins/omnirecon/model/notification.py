"""A change notification as the platforms deliver it: verified into an `Incoming`, or `Rejected` with the HTTP
status to answer and why. The per-platform verification lives in each adapter (adapters/<system>/notifications.py);
these are the shared shapes and the parsing helpers they use on the raw body."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime

from omnirecon.timeutil import parse_ts


@dataclass(frozen=True)
class Incoming:
    """A verified notification, ready to store."""
    source: str
    event_id: str
    topic: str
    body: bytes
    occurred_at: datetime | None = None
    headers: dict = field(default_factory=dict)
    quarantined: str | None = None     # authentic but unusable (malformed): kept with the reason, never processed


class Rejected(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def header(headers, name: str) -> str | None:
    """Headers match case-insensitively (HTTP), whatever mapping the server hands over."""
    want = name.lower()
    for k, v in headers.items():
        if k.lower() == want:
            return v
    return None


def json_object(raw: bytes) -> dict:
    """The body as a JSON object, or Rejected(400)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Rejected(400, "body is not a JSON object")
    return doc


def ts(value) -> datetime | None:
    """A timestamp in any form the platforms send, or None when absent or unreadable."""
    try:
        return parse_ts(value) if value else None
    except (ValueError, TypeError, OverflowError, OSError):   # OverflowError, OSError: out of the platform's range
        return None


def signature_matches(given: str | None, *expected: str) -> bool:
    """Whether a signature header equals one of the expected values, in constant time. Headers arrive as any
    latin-1 text: compared as bytes, a non-ASCII one is a mismatch (hmac.compare_digest raises on non-ASCII str)."""
    if not given:
        return False
    got = given.strip().encode("utf-8", "surrogateescape")
    return any(hmac.compare_digest(got, want.encode()) for want in expected)


def b64_hmac(secret: str, raw: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
