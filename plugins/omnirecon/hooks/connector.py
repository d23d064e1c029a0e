"""`ConnectorHook`: the Airflow BaseHook shared by the four system hooks.

A hook gets its fields from its Airflow connection (lazily, on first use) or from a plain dict
(`from_fields`, for tests and the CLI). All waits run on a clock scaled by `time_scale` (extra
`time_scale`, default 1): a sandbox with time_scale 0.01 runs documented rates 100x faster, and so do we.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from airflow.sdk.bases.hook import BaseHook

from omnirecon.hooks.base import HttpCore, RetryPolicy
from omnirecon.hooks.fields import CONNECTION_FORMS

log = logging.getLogger("omnirecon.hooks")


def _as_dict(extra: Any) -> dict:
    if not extra:
        return {}
    if isinstance(extra, dict):
        return dict(extra)
    try:
        value = json.loads(extra)
    except (TypeError, ValueError):
        raise ValueError("connection extra is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("connection extra must be a JSON object")
    return value


class CachedBearerToken:
    """A short-lived access token (LWA 1 h, Walmart 15 min) fetched by the hook's `_refresh_token()` and reused
    until `refresh_margin_s` before it expires; thread-safe."""
    refresh_margin_s = 300.0

    def _init_token_cache(self) -> None:
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def access_token(self, force: bool = False) -> str:
        with self._token_lock:
            if force or not self._token or time.monotonic() >= self._token_expires:
                self._refresh_token()
            return self._token

    def _store_token(self, token: str, lifetime_s: float) -> None:
        self.core.add_secret(token)
        self._token = token
        self._token_expires = time.monotonic() + max(0.0, lifetime_s - self.refresh_margin_s) * self.time_scale


class ConnectorHook(BaseHook):
    """Common plumbing: connection fields, the HTTP core, audit and evidence callbacks."""

    conn_name_attr = "conn_id"
    default_conn_name = ""
    conn_type = ""
    hook_name = ""
    system = ""
    secret_extras: tuple[str, ...] = ()

    def __init__(self, conn_id: str | None = None, *, timeout: float | tuple | None = None,
                 retry: RetryPolicy | None = None, time_scale: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name
        self._fields: dict | None = None
        self._timeout = timeout
        self._retry = retry
        self._time_scale = time_scale
        self._core: HttpCore | None = None
        self.audit: Callable[..., None] | None = None      # audit(system=, operation=, target=, request=, response_status=, outcome=)
        self.fallback_extras: dict = {}    # used when the connection lacks an extra (e.g. retailer settings)
        self._on_event: Callable[..., None] | None = None

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_fields(cls, *, host: str, login: str | None = None, password: str | None = None,
                    extra: dict | str | None = None, conn_type: str | None = None, port: int | None = None,
                    schema: str | None = None, **hook_kwargs):
        """A hook from plain connection fields (no Airflow metadata database needed)."""
        hook = cls(**hook_kwargs)
        hook._fields = {"host": host, "login": login, "password": password, "port": port, "schema": schema,
                        "extra": _as_dict(extra)}
        return hook

    @property
    def fields(self) -> dict:
        if self._fields is None:
            conn = self.get_connection(self.conn_id)
            self._fields = {"host": conn.host, "login": conn.login, "password": conn.password, "port": conn.port,
                            "schema": conn.schema, "extra": _as_dict(conn.extra)}
        return self._fields

    def extra(self, name: str, default: Any = None) -> Any:
        """An extra field, bare (`seller_id`) or UI-prefixed (`extra__omnirecon_amazon__seller_id`)."""
        extra = self.fields["extra"]
        for key in (name, f"extra__{self.conn_type}__{name}"):
            if extra.get(key) not in (None, ""):
                return extra[key]
        if self.fallback_extras.get(name) not in (None, ""):
            return self.fallback_extras[name]
        return default

    @property
    def base_url(self) -> str:
        host = (self.fields["host"] or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.conn_id}: host (base URL) is empty")
        if "://" not in host:
            host = "https://" + host
        if self.fields.get("port") and host.count(":") < 2:
            host = f"{host}:{self.fields['port']}"
        return host

    @property
    def time_scale(self) -> float:
        if self._time_scale is None:
            self._time_scale = float(self.extra("time_scale", 1.0))
        return self._time_scale

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` of documented time (scaled for a sandbox)."""
        if seconds > 0:
            time.sleep(seconds * self.time_scale)

    # Operations that create something server-side; a timeout after sending is never retried blindly.
    non_idempotent_operations: frozenset = frozenset()

    poll_fraction = 0.1       # between polls of a server-side job, wait this fraction of the time it has run...
    poll_min_seconds = 0.5    # ...but at least this (documented seconds): a job is seen done <= ~10% late

    def poll_wait(self, started: float, longest: float) -> None:
        """Wait before the next poll of a job started at `started` (time.monotonic()): short waits while
        the job is young, growing with its age up to `longest` documented seconds."""
        age = (time.monotonic() - started) / self.time_scale
        self.wait(min(longest, max(self.poll_min_seconds, age * self.poll_fraction)))

    @property
    def core(self) -> HttpCore:
        if self._core is None:
            timeout = self._timeout or float(self.extra("timeout", 0) or 0) or (10.0, 60.0)
            self._core = HttpCore(self.system, timeout=timeout, retry=self._retry, sleep=self.wait,
                                  non_idempotent=self.non_idempotent_operations)
            self._core.on_event = self._on_event
            for name in ("password",):
                self._core.add_secret(self.fields.get(name))
            for name in self.secret_extras:
                self._core.add_secret(self.extra(name))
        return self._core

    @property
    def on_event(self):
        return self._on_event

    @on_event.setter
    def on_event(self, callback) -> None:
        self._on_event = callback
        if self._core is not None:
            self._core.on_event = callback

    @property
    def api_calls(self) -> int:
        return self._core.api_calls if self._core else 0

    @property
    def retries(self) -> int:
        return self._core.retries if self._core else 0

    def get_conn(self) -> HttpCore:
        return self.core

    def record_write(self, operation: str, target: str, request: dict, response_status: int | None,
                     outcome: str, detail: str | None = None) -> None:
        """Report one state-changing call to the caller's audit callback (never with credentials)."""
        if self.audit is None:
            return
        fields = dict(system=self.system, operation=operation, target=target,
                      request=json.loads(self.core.redact(json.dumps(request, default=str))),
                      response_status=response_status, outcome=outcome)
        if detail:
            fields["detail"] = self.core.redact(detail)
        self.audit(**fields)

    # -- Airflow UI -------------------------------------------------------------------
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields in the connection form (the legacy FAB form; provider.py declares them too)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import PasswordField, StringField

        widgets = {}
        for name, (label, description, default, sensitive) in CONNECTION_FORMS[cls.conn_type]["extras"].items():
            if sensitive:
                widgets[name] = PasswordField(lazy_gettext(label), widget=BS3PasswordFieldWidget(),
                                              description=description)
            else:
                widgets[name] = StringField(lazy_gettext(label), widget=BS3TextFieldWidget(),
                                            description=description, default=default)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        b = CONNECTION_FORMS[cls.conn_type]["behaviour"]
        return {"hidden_fields": list(b["hidden_fields"]), "relabeling": dict(b["relabeling"]),
                "placeholders": dict(b["placeholders"])}

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.ping()
            return True, f"{self.hook_name}: connection works"
        except Exception as e:
            return False, self.core.redact(str(e)) if self._fields else type(e).__name__

    def ping(self) -> None:
        raise NotImplementedError

    def call_json(self, method: str, path: str, operation: str, *, shape: tuple = (), **kwargs) -> dict:
        """A JSON object answer holding every path in `shape`; malformed answers of reads are retried
        (writes are not: a malformed answer to a write is raised, never replayed). Needs `self.call`."""
        parser = self.core.json_parser(operation, *shape)
        if method == "GET":
            return self.call(method, path, operation, parse=parser, **kwargs)
        return parser(self.call(method, path, operation, **kwargs))
