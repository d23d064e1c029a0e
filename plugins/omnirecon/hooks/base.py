"""Shared HTTP core for the four connectors.

One `HttpCore` per hook: a pooled `requests.Session`, a timeout on every call, retries with exponential
backoff + jitter on 429/5xx/timeouts/connection errors (honouring `Retry-After`), a correlation id per
attempt, `api_calls`/`retries` counters, an `on_event` callback for evidence, and logs that never show
a credential. `TokenBucket` is the client-side rate limiter the hooks share.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from omnirecon.errors import OmniReconError

log = logging.getLogger("omnirecon.hooks")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MASK = "***"


class ApiError(OmniReconError):
    """A call that failed for good (after retries). The message never carries a credential."""

    def __init__(self, system: str, operation: str, message: str, status_code: int | None = None,
                 code: str | None = None, retryable: bool = False):
        self.system, self.operation, self.status_code, self.code = system, operation, status_code, code
        self.retryable = retryable
        where = f"{system} {operation}"
        status = f" HTTP {status_code}" if status_code else ""
        super().__init__(f"{where}:{status} {code + ': ' if code else ''}{message}".rstrip())


class MalformedResponse(ApiError):
    """The body does not parse or misses fields the API documents as required."""


class Retry(Exception):
    """Raised by a hook's response inspector: retry this call after `delay` seconds (counted as a retry)."""

    def __init__(self, reason: str, delay: float | None = None, status_code: int | None = None,
                 outcome: str = "retry"):
        super().__init__(reason)
        self.reason, self.delay, self.status_code, self.outcome = reason, delay, status_code, outcome


class Reauthenticate(Exception):
    """Raised by a hook's response inspector: credentials were rejected; refresh once and retry."""

    def __init__(self, reason: str, status_code: int | None = None):
        super().__init__(reason)
        self.reason, self.status_code = reason, status_code


@dataclass
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 0.5         # seconds; attempt n waits about base * 2**n (with jitter)
    backoff_max: float = 30.0
    max_wait: float = 120.0           # never sleep longer than this for one retry, whatever Retry-After says


class TokenBucket:
    """Client-side token bucket: `rate` tokens per second, up to `burst`. Thread-safe."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = float(burst)
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self, tokens: float = 1.0) -> float:
        with self._lock:
            self._refill()
            return max(0.0, (tokens - self._tokens) / self.rate)

    def acquire(self, tokens: float = 1.0) -> float:
        """Take `tokens`, sleeping until they are available. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return waited
                need = (tokens - self._tokens) / self.rate
            self._sleep(need)
            waited += need

    def set_rate(self, rate: float) -> None:
        if rate > 0:
            with self._lock:
                self._refill()
                self.rate = float(rate)

    def empty(self) -> None:
        """The server said we are over the limit: assume the bucket is empty."""
        with self._lock:
            self._refill()
            self._tokens = 0.0


def register_secret(value: str | None) -> None:
    """Tell Airflow's secrets masker about a credential (no-op outside Airflow)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret
        mask_secret(value)
    except Exception:  # Airflow absent or not configured: our own masking still applies
        pass


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _body_excerpt(resp: requests.Response, limit: int = 300) -> str:
    try:
        text = resp.text
    except Exception:
        return ""
    return " ".join(text.split())[:limit]


EventCallback = Callable[..., None]


class HttpCore:
    """Pooled, retrying, secret-free HTTP for one system."""

    def __init__(self, system: str, *, timeout: float | tuple = (10.0, 60.0), retry: RetryPolicy | None = None,
                 pool_size: int = 8, sleep: Callable[[float], None] = time.sleep,
                 non_idempotent: frozenset = frozenset()):
        self.system = system
        # operations that must not be re-sent once the request may have reached the server
        self.non_idempotent = non_idempotent
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.api_calls = 0
        self.retries = 0
        self.calls_by_operation: Counter = Counter()
        self.on_event: EventCallback | None = None
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    # -- secrets ----------------------------------------------------------------------
    def add_secret(self, value: str | None) -> None:
        if value and len(str(value)) >= 4:
            self._secrets.add(str(value))
            register_secret(str(value))

    def redact(self, text: Any) -> str:
        out = str(text)
        for s in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(s, MASK)
        return out

    # -- evidence ---------------------------------------------------------------------
    def event(self, operation: str, outcome: str, status_code: int | None = None, message: str = "") -> None:
        msg = self.redact(message)
        level = logging.WARNING if outcome in ("retry", "throttled", "error") else logging.DEBUG
        log.log(level, "%s %s: %s%s %s", self.system, operation, outcome,
                f" (HTTP {status_code})" if status_code else "", msg)
        if self.on_event is not None:
            try:
                self.on_event(system=self.system, operation=operation, outcome=outcome,
                              status_code=status_code, message=msg)
            except Exception as e:  # evidence must never break the call itself
                log.warning("%s: could not record API event: %s", self.system, type(e).__name__)

    def _count(self, calls: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.api_calls += calls
            self.retries += retries

    def backoff(self, attempt: int, floor: float | None = None) -> float:
        base = min(self.retry.backoff_max, self.retry.backoff_base * (2 ** attempt))
        delay = base * (0.5 + random.random() / 2)   # jitter: 50-100% of the exponential step
        if floor is not None:
            delay = max(delay, floor)
        return min(delay, self.retry.max_wait)

    # -- the call ---------------------------------------------------------------------
    def request(self, method: str, url: str, *, operation: str,
                prepare: Callable[[dict, str], None] | None = None,
                inspect: Callable[[requests.Response], None] | None = None,
                reauthenticate: Callable[[], None] | None = None,
                pace: Callable[[], None] | None = None,
                ok: Callable[[requests.Response], bool] | None = None,
                parse: Callable[[requests.Response], Any] | None = None,
                **kwargs) -> Any:
        """Send one logical call, retrying transient failures.

        prepare(kwargs, correlation_id): set auth headers/signature for this attempt.
        pace(): client-side rate limiting before each attempt.
        inspect(resp): raise Retry / Reauthenticate for system-specific signals (THROTTLED in a 200, 403 Unauthorized).
        ok(resp): which statuses count as an answer (default: < 400); others raise ApiError.
        parse(resp): turn the answer into a value (raising MalformedResponse if it does not parse or misses
        fields); a malformed answer is retried like a 5xx and `request` then returns the parsed value.
        Only pass `parse` for calls that are safe to repeat (reads, idempotent writes).
        """
        attempt = 0
        reauthed = False
        while True:
            cid = str(uuid.uuid4())
            call = dict(kwargs)
            call["headers"] = dict(kwargs.get("headers") or {})
            call.setdefault("timeout", self.timeout)
            if pace:
                pace()
            if prepare:
                prepare(call, cid)
            self._count(calls=1)
            self.calls_by_operation[operation] += 1
            t0 = time.monotonic()
            try:
                resp = self.session.request(method, url, **call)
            except (requests.Timeout, requests.ConnectionError) as e:
                kind = "timeout" if isinstance(e, requests.Timeout) else "connection error"
                if operation in self.non_idempotent and not isinstance(e, requests.ConnectTimeout):
                    # the server may have acted on it (e.g. started a bulk job, queued a feed): never send twice
                    self.event(operation, "error", None, f"{kind} on a non-idempotent call; not retried [cid {cid}]")
                    raise ApiError(self.system, operation, f"{kind}: the call may have been applied; not retried",
                                   retryable=False) from None
                if attempt >= self.retry.max_retries:
                    self.event(operation, "error", None, f"{kind} after {attempt + 1} attempts [cid {cid}]")
                    raise ApiError(self.system, operation, f"{kind} after {attempt + 1} attempts",
                                   retryable=True) from None
                delay = self.backoff(attempt)
                self.event(operation, "retry", None, f"{kind}; retry {attempt + 1} in {delay:.2f}s [cid {cid}]")
                self._count(retries=1)
                self.sleep(delay)
                attempt += 1
                continue
            log.debug("%s %s %s -> %s in %.3fs [cid %s]", self.system, operation, method,
                      resp.status_code, time.monotonic() - t0, cid)
            try:
                if inspect:
                    inspect(resp)
                if resp.status_code in RETRYABLE_STATUS:
                    floor = parse_retry_after(resp.headers.get("Retry-After"))
                    raise Retry(f"HTTP {resp.status_code}: {_body_excerpt(resp, 160)}", floor, resp.status_code,
                                "throttled" if resp.status_code == 429 else "retry")
            except Reauthenticate as r:
                if reauthed or reauthenticate is None:
                    self.event(operation, "error", r.status_code, f"credentials rejected: {r.reason} [cid {cid}]")
                    raise ApiError(self.system, operation, f"credentials rejected: {self.redact(r.reason)}",
                                   r.status_code) from None
                reauthed = True
                self.event(operation, "retry", r.status_code, f"credentials rejected, refreshing: {r.reason}")
                self._count(retries=1)
                reauthenticate()
                continue
            except Retry as r:
                if attempt >= self.retry.max_retries:
                    self.event(operation, "error", r.status_code,
                               f"gave up after {attempt + 1} attempts: {r.reason} [cid {cid}]")
                    raise ApiError(self.system, operation, f"gave up after {attempt + 1} attempts: "
                                   f"{self.redact(r.reason)}", r.status_code, retryable=True) from None
                delay = self.backoff(attempt, r.delay) if r.outcome != "paced" else min(r.delay or 0, self.retry.max_wait)
                self.event(operation, r.outcome if r.outcome != "paced" else "throttled", r.status_code,
                           f"{r.reason}; retry {attempt + 1} in {delay:.2f}s [cid {cid}]")
                self._count(retries=1)
                self.sleep(delay)
                attempt += 1
                continue
            if not (ok(resp) if ok else resp.status_code < 400):
                message = self.redact(_body_excerpt(resp))
                self.event(operation, "error", resp.status_code, f"{message} [cid {cid}]")
                raise ApiError(self.system, operation, message, resp.status_code, code=error_code(resp))
            if parse is None:
                return resp
            try:
                return parse(resp)
            except MalformedResponse as e:
                if attempt >= self.retry.max_retries:
                    self.event(operation, "error", resp.status_code, f"malformed answer: {e} [cid {cid}]")
                    raise
                delay = self.backoff(attempt)
                self.event(operation, "retry", resp.status_code,
                           f"malformed answer ({e}); retry {attempt + 1} in {delay:.2f}s [cid {cid}]")
                self._count(retries=1)
                self.sleep(delay)
                attempt += 1

    def json(self, resp: requests.Response, operation: str) -> Any:
        try:
            return resp.json()
        except (ValueError, json.JSONDecodeError):
            raise MalformedResponse(self.system, operation, f"response body is not JSON: "
                                    f"{self.redact(_body_excerpt(resp, 120))!r}", resp.status_code) from None

    def json_parser(self, operation: str, *paths: str) -> Callable[[requests.Response], Any]:
        """A `parse` for `request`: a JSON object holding every dotted path in `paths`."""
        def parse(resp: requests.Response) -> Any:
            body = self.json(resp, operation)
            if not isinstance(body, dict):
                raise MalformedResponse(self.system, operation, "response is not a JSON object", resp.status_code)
            for path in paths:
                require(body, path, self.system, operation)
            return body
        return parse

    def close(self) -> None:
        self.session.close()


def error_code(resp: requests.Response) -> str | None:
    """The first error code of any of the four systems' error shapes, if the body has one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("errors", "error", "o:errorDetails"):
        errs = body.get(key)
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            e = errs[0]
            return e.get("code") or e.get("o:errorCode") or (e.get("extensions") or {}).get("code")
    return None


def require(obj: Any, path: str, system: str, operation: str) -> Any:
    """Walk `a.b.c` in a parsed body; a missing part is a MalformedResponse naming the path."""
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise MalformedResponse(system, operation, f"response misses `{path}`")
        cur = cur[part]
    return cur
