"""A small HTTP layer on the stdlib ThreadingHTTPServer: request/response objects, routing, connection drops."""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class DropConnection(Exception):
    """Raised by a handler to close the socket without an answer (reset), like a dead peer."""


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    headers: dict            # lower-cased names
    body: bytes
    base_url: str

    @property
    def query(self) -> dict:
        return parse_qs(self.raw_query, keep_blank_values=True)

    def arg(self, name: str, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8"), keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, obj, status: int = 200, headers: dict | None = None) -> "Response":
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), h)

    @classmethod
    def text(cls, text: str | bytes, status: int = 200, content_type: str = "text/plain", headers: dict | None = None) -> "Response":
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return cls(status, text if isinstance(text, bytes) else text.encode(), h)


class Router:
    """(method, path regex) -> (operation name, handler). Path params become keyword arguments."""

    def __init__(self):
        self._routes = []

    def add(self, method: str, pattern: str, operation: str, handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, regex, operation, handler))

    def match(self, method: str, path: str):
        """-> (operation, handler, params) | ('METHOD_NOT_ALLOWED', None, {}) | None"""
        path_hit = False
        for m, regex, op, handler in self._routes:
            hit = regex.match(path)
            if hit:
                path_hit = True
                if m == method:
                    return op, handler, hit.groupdict()
        return ("METHOD_NOT_ALLOWED", None, {}) if path_hit else None


def _handler_class(app):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "omnirecon-sandbox"
        disable_nagle_algorithm = True
        wbufsize = 1 << 16          # headers and body leave in one segment (no delayed-ACK stalls)

        def log_message(self, *args):  # quiet: tests and the CLI own the output
            pass

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            host, port = self.server.server_address[:2]
            req = Request(self.command, split.path, split.query,
                          {k.lower(): v for k, v in self.headers.items()}, body, f"http://{host}:{port}")
            try:
                resp = app.handle(req)
            except DropConnection:
                self._reset()
                return
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        def _reset(self):
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True
            try:
                self.connection.close()
            except OSError:
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class HttpService:
    """One listening port served from a background thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.server = _Server((host, port), _handler_class(app))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name=f"sandbox-{getattr(app, 'name', 'http')}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
