"""`omnirecon receiver`: the HTTP endpoint the platforms deliver change notifications to.

POST /notifications/<source> (shopify | walmart | erp): the signature is checked on the raw body first; what
fails gets 4xx and leaves no trace but a count. A verified notification is stored in the ledger inbox, and only
once that has committed does the receiver answer 200 (a duplicate also gets 200: the platform may stop
retrying). If the ledger cannot take it, 503, so the platform retries. Stateless: run as many as you like
behind a load balancer against one PostgreSQL ledger. GET /healthz reports the counts.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from omnirecon.live.inbox import Inbox, InboxUnavailable
from omnirecon.model.notification import Rejected

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 2 * 1024 * 1024
PATH_PREFIX = "/notifications/"


class Receiver:
    """The receiver's state: its sources (by path name), the inbox, and counts (in = stored + duplicate + rejected
    + unavailable + error)."""

    def __init__(self, inbox: Inbox, sources: dict, host: str = "127.0.0.1", port: int = 0,
                 store_timeout_s: float = 4.0,    # within Shopify's 5 s for the whole delivery
                 idle_timeout_s: float = 30.0):   # a connection silent this long is closed (its thread freed)
        self.inbox, self.sources, self.store_timeout_s = inbox, dict(sources), store_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self.server = _Server((host, port), _handler(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def set_sources(self, sources: dict) -> None:
        """Swap the sources (a rotated secret) without a restart."""
        self.sources = dict(sources)

    def start(self) -> "Receiver":
        self.inbox.start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.inbox.stop()

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def handle(self, path: str, raw: bytes, headers) -> tuple[int, dict]:
        """One delivery -> (status, answer). Never raises."""
        self.count("in")
        source = self.sources.get(path[len(PATH_PREFIX):]) if path.startswith(PATH_PREFIX) else None
        if source is None:
            self.count("rejected:unknown_source")
            return 404, {"error": f"no notification source at {path}"}
        try:
            item = source.verify(raw, headers)
        except Rejected as e:
            self.count(f"rejected:{e.status}")
            log.info("rejected a %s notification: %s", source.name, e.reason)
            return e.status, {"error": e.reason}
        except Exception as e:  # noqa: BLE001 - a verifier's bug: answered and counted, never a dropped connection
            self.count("error")
            log.error("could not verify a %s notification (%s); answering 500", source.name, type(e).__name__)
            return 500, {"error": "not verified; retry"}
        try:
            stored = self.inbox.put(item, timeout_s=self.store_timeout_s)
        except InboxUnavailable as e:
            self.count("unavailable")
            log.error("could not store a %s notification (%s): answering 503 so it is redelivered", source.name, e)
            return 503, {"error": "not stored; retry"}
        self.count("stored" if stored else "duplicate")
        return 200, {"stored": stored, "duplicate": not stored}


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024   # the default backlog of 5 refuses connections under a burst of deliveries
    daemon_threads = True


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "omnirecon-receiver"
        timeout = receiver.idle_timeout_s    # the socket's: a half-sent request or an idle keep-alive ends

        def log_message(self, fmt, *args):   # headers may carry signatures: no access log of them
            log.debug("%s %s", self.address_string(), fmt % args)

        def _answer(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/healthz":
                return self._answer(200, {"ok": True, "counts": dict(receiver.counts),
                                          "sources": sorted(receiver.sources)})
            self._answer(404, {"error": "not found"})

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                receiver.count("in")
                receiver.count("rejected:411")
                self.close_connection = True
                return self._answer(411, {"error": "Content-Length required"})
            if int(length) > MAX_BODY_BYTES:
                receiver.count("in")
                receiver.count("rejected:413")
                self.close_connection = True   # the body is not read: the connection cannot be reused
                return self._answer(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            raw = self.rfile.read(int(length))
            status, doc = receiver.handle(self.path.split("?", 1)[0], raw, self.headers)
            self._answer(status, doc)

    return Handler


def serve(host: str = "0.0.0.0", port: int = 8099, reload_s: float = 60.0) -> int:
    """Blocking: the receiver on host:port against the configured ledger until SIGINT/SIGTERM; the sources'
    secrets are re-read from the connections every `reload_s` (a rotation needs no restart)."""
    import signal
    from omnirecon.ledger import get_ledger
    from omnirecon.live.sources import sources_from_connections
    receiver = Receiver(Inbox(get_ledger()), sources_from_connections(), host=host, port=port).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.warning("omnirecon receiver on %s, sources: %s", receiver.url, ", ".join(sorted(receiver.sources)) or "none")
    print(f"omnirecon receiver: {receiver.url}{PATH_PREFIX}<source>  sources: "
          f"{', '.join(sorted(receiver.sources)) or 'none configured'}", flush=True)
    try:
        while not stop.wait(reload_s):
            receiver.set_sources(sources_from_connections())
    finally:
        receiver.stop()   # the inbox drains: whatever was verified and queued commits before exit
    return 0
