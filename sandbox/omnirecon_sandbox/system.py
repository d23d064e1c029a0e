"""What every imitated system shares: routing, faults, the /_sandbox endpoints, served files."""
from __future__ import annotations

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass

from omnirecon_sandbox.changes import Change
from omnirecon_sandbox.http import DropConnection, Request, Response, Router
from omnirecon_contract.timeutil import iso

log = logging.getLogger(__name__)

_HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
                 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                 503: "Service Unavailable", 504: "Gateway Timeout"}


def reason(status: int) -> str:
    return _HTTP_REASONS.get(status, "Error")


@dataclass
class Call:
    """One request as a handler sees it. `apply` is False under a drop_writes fault."""
    req: Request
    operations: list
    apply: bool = True


@dataclass
class ServedFile:
    content: bytes | None
    content_type: str
    expires_at: float | None
    signature: str
    writable: bool = False


class BearerTokens:
    """Access tokens a system issued (token -> expiry on the sandbox clock), presented in `token_header`."""
    token_header = ""

    def _init_tokens(self) -> None:
        self.tokens: dict[str, float] = {}
        self.tokens_lock = threading.Lock()

    def issue_token(self, token: str, lifetime_s: float) -> None:
        with self.tokens_lock:
            self.tokens[token] = self.sb.clock.monotonic() + lifetime_s

    def token_valid(self, token: str | None) -> bool:
        with self.tokens_lock:
            expiry = self.tokens.get(token)
        return expiry is not None and self.sb.clock.monotonic() < expiry

    def expire_token(self, req: Request) -> Response:
        token = req.header(self.token_header)
        with self.tokens_lock:
            if token in self.tokens:
                self.tokens[token] = 0.0
        return self._unauthorized()

    def drain_buckets(self, operations: list[str]) -> None:
        for op in operations:
            if op in self.buckets:
                self.buckets[op].drain()


class System:
    """Base for the four imitations. Subclasses fill `router` and implement the error hooks."""

    name = "system"
    token_operation = "token"

    def __init__(self, sandbox, data: dict):
        self.sb = sandbox
        self.data = data
        self.router = Router()
        self.files: dict[str, ServedFile] = {}
        self.files_lock = threading.Lock()
        self.base_url = ""

    # -- hooks for subclasses -------------------------------------------------------------------------
    def operations(self, req: Request, operation: str, params: dict) -> list[str]:
        return [operation]

    def error(self, status: int, code: str, message: str) -> Response:
        raise NotImplementedError

    def throttled(self, operations: list[str]) -> Response:
        raise NotImplementedError

    def expire_token(self, req: Request) -> Response:
        """Mark the token this request presents as expired and answer with the system's expired-token error."""
        raise NotImplementedError

    def decorate(self, resp: Response, operations: list[str]) -> Response:
        return resp

    def dump(self) -> dict:
        return self.data

    # -- state changes ----------------------------------------------------------------------------------
    def stamp(self) -> str:
        """The sandbox-clock instant as the platform's timestamps show it."""
        return iso(self.sb.world_clock.now())

    def world_changed(self, kind: str, **fields) -> None:
        """Publish one state change (changes.Change) on the sandbox's bus; every mutation calls it."""
        bus = self.sb.changes
        if bus.active:
            clock = self.sb.world_clock
            bus.publish(Change(self.name, kind, clock.monotonic(), iso(clock.now()), bus.actor(), **fields))

    # -- dispatch ---------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        self.base_url = req.base_url
        if req.path.startswith("/_sandbox/"):
            return self._internal(req)
        hit = self.router.match(req.method, req.path)
        if hit is None:
            return self.error(404, "NOT_FOUND", f"No route for {req.method} {req.path}")
        operation, handler, params = hit
        if handler is None:
            return self.error(405, "METHOD_NOT_ALLOWED", f"{req.method} is not allowed on {req.path}")
        ops = self.operations(req, operation, params)
        fired = self.sb.faults.hit(self.name, ops)
        down = fired.get("down")
        if down:
            if down.status:
                return Response.text(reason(down.status), down.status)
            raise DropConnection()
        if "http_status" in fired:
            st = fired["http_status"].status
            return self.decorate(self.error(st, reason(st).upper().replace(" ", "_"), reason(st)), ops)
        if "timeout" in fired:
            fault = fired["timeout"]
            self.sb.clock.sleep(self.sb.clock.scaled(fault.seconds))
            if fault.options.get("x_drop"):
                raise DropConnection()
        throttle = fired.get("throttle")
        if throttle and (throttle.count is not None or throttle.hits == 1):
            # A bounded throttle answers "throttled" on each hit; an unbounded one drains the bucket once
            # and from then on enforces the real limits strictly (contracts/scenario.md).
            return self.decorate(self.throttled(ops), ops)
        if "expired_token" in fired and self.token_operation not in ops:
            return self.decorate(self.expire_token(req), ops)
        try:
            resp = handler(Call(req, ops, apply="drop_writes" not in fired), **params)
        except DropConnection:
            raise
        except Exception as e:  # a sandbox bug must still answer like a server, never hang the client
            log.exception("sandbox %s: %s failed", self.name, ops)
            resp = self.error(500, "INTERNAL_SERVER_ERROR", f"Internal error ({type(e).__name__})")
        if "malformed" in fired:
            resp = self._malform(resp, fired["malformed"])
        return self.decorate(resp, ops)

    @staticmethod
    def _malform(resp: Response, fault) -> Response:
        if fault.options.get("x_variant") == "missing_fields":
            resp.body = b"{}"
        else:
            resp.body = resp.body[: max(1, len(resp.body) // 2)] or b"{"
        return resp

    def _internal(self, req: Request) -> Response:
        platform = self.sb.notifications.platforms.get(self.name)
        answer = platform.internal(req) if hasattr(platform, "internal") else None
        if answer is not None:
            return answer
        if req.path == "/_sandbox/state" and req.method == "GET":
            return Response.json(self.sb.state())
        if req.path == "/_sandbox/writes" and req.method == "GET":
            return Response.json(self.sb.writes())
        if req.path == "/_sandbox/world" and req.method == "GET":
            world = self.sb.world
            return Response.json(world.dump() if world else {"error": "this scenario has no world"}, 200 if world else 404)
        if req.path == "/_sandbox/faults":
            return self._control_faults(req)
        if req.path.startswith("/_sandbox/files/"):
            return self._serve_file(req, req.path.rsplit("/", 1)[-1])
        return Response.json({"error": f"unknown sandbox path {req.path}"}, 404)

    def _control_faults(self, req: Request) -> Response:
        """GET: the faults and their counters; POST a fault (or a list): start it; DELETE ?system=&kind=&operation=:
        lift the matching ones."""
        book = self.sb.faults
        try:
            if req.method == "POST":
                body = req.json()
                for doc in body if isinstance(body, list) else [body]:
                    book.add(doc if isinstance(doc, dict) else {})
            elif req.method == "DELETE":
                book.lift(req.arg("system"), req.arg("kind"), req.arg("operation"))
            elif req.method != "GET":
                return Response.json({"error": f"{req.method} is not allowed on {req.path}"}, 405)
        except ValueError as e:
            return Response.json({"error": str(e)}, 400)
        return Response.json(book.summary())

    # -- presigned-style files (bulk results, report and feed documents) ----------------------------------
    def publish_file(self, content: bytes | None, content_type: str, ttl_seconds: float | None,
                     writable: bool = False, file_id: str | None = None) -> str:
        """Serve `content` at a presigned-style URL that expires after `ttl_seconds` (documented, scaled)."""
        file_id = file_id or uuid.uuid4().hex
        expires = self.sb.clock.monotonic() + self.sb.clock.scaled(ttl_seconds) if ttl_seconds else None
        sig = secrets.token_hex(16)
        with self.files_lock:
            self.files[file_id] = ServedFile(content, content_type, expires, sig, writable)
        return f"{self.base_url}/_sandbox/files/{file_id}?X-Amz-Expires={int(ttl_seconds or 0)}&X-Amz-Signature={sig}"

    def file_content(self, file_id: str) -> bytes | None:
        with self.files_lock:
            f = self.files.get(file_id)
        return f.content if f else None

    def _serve_file(self, req: Request, file_id: str) -> Response:
        with self.files_lock:
            f = self.files.get(file_id)
        denied = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{}</Message></Error>'
        if f is None or req.arg("X-Amz-Signature") != f.signature:
            return Response.text(denied.format("Access Denied"), 403, "application/xml")
        if f.expires_at is not None and self.sb.clock.monotonic() > f.expires_at:
            return Response.text(denied.format("Request has expired"), 403, "application/xml")
        if req.method == "PUT" and f.writable:
            with self.files_lock:
                f.content = req.body
                f.content_type = req.header("content-type", f.content_type)
            return Response(200, b"", {"ETag": '"' + secrets.token_hex(8) + '"'})
        if req.method in ("GET", "HEAD") and f.content is not None:
            return Response(200, f.content, {"Content-Type": f.content_type})
        return Response.text(denied.format("Access Denied"), 403, "application/xml")
