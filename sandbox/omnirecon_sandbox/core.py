"""The Sandbox: the four imitation APIs built from one scenario, each on its own port."""
from __future__ import annotations

import copy
import json
import os
import signal
import threading
from dataclasses import dataclass, field

from omnirecon_sandbox.changes import ChangeBus
from omnirecon_sandbox.clock import SandboxClock
from omnirecon_sandbox.credentials import SandboxCredentials
from omnirecon_sandbox.faults import FaultBook
from omnirecon_sandbox.generate import expand
from omnirecon_sandbox.http import HttpService
from omnirecon_contract.timeutil import iso, utcnow


@dataclass
class SandboxOptions:
    """Tunables. Durations are documented (unscaled) seconds; the clock's time_scale applies."""
    shopify_bucket_size: float | None = None        # None: the plan's (1000 standard/advanced, 10000 plus)
    shopify_restore_rate: float | None = None       # None: the plan's (100 / 200 / 1000 points per second)
    shopify_throttle_status: int = 200              # Shopify answers THROTTLED with HTTP 200; 429 is optional
    shopify_bulk_seconds: float = 4.0               # CREATED -> COMPLETED
    amazon_rate_limits: dict = field(default_factory=dict)   # operationId -> (rate, burst), overrides the model's
    amazon_processing_seconds: float = 4.0          # reports and feeds IN_QUEUE -> DONE
    amazon_listing_seconds: float = 5.0             # patchListingsItem ACCEPTED -> applied (queued meanwhile)
    walmart_rate_limits: dict = field(default_factory=dict)  # operationId -> (tokens per minute, bucket size)
    walmart_processing_seconds: float = 4.0         # feeds RECEIVED -> PROCESSED
    netsuite_concurrency: int = 5
    lwa_token_seconds: int = 3600
    walmart_token_seconds: int = 900
    notify_connect_timeout: float = 1.0             # webhook deliveries: real seconds, never scaled
    notify_timeout: float = 5.0


def _since_as_of(scenario) -> float:
    """An `as_of: now` scenario was loaded a moment ago: its world has run since then, so the clock shows real time."""
    if str(scenario.raw.get("as_of", "now")).strip() != "now":
        return 0.0
    return max(0.0, (utcnow() - scenario.as_of).total_seconds())


class Sandbox:
    """Local imitations of Shopify, Amazon SP-API (+LWA), Walmart and NetSuite for one scenario."""

    def __init__(self, scenario, time_scale: float = 1.0, host: str = "127.0.0.1",
                 options: SandboxOptions | dict | None = None, clock: SandboxClock | None = None,
                 world_clock: SandboxClock | None = None):
        """`clock`: the one time source (default real time from the scenario's as_of at `time_scale`; a
        ManualClock lets tests drive it). `world_clock` is the same clock under the living world's name."""
        self.scenario = scenario
        self.host = host
        self.clock = clock or world_clock or SandboxClock(scenario.as_of, time_scale, _since_as_of(scenario))
        self.options = options if isinstance(options, SandboxOptions) else SandboxOptions(**(options or {}))
        self.credentials = SandboxCredentials()
        self.lock = threading.RLock()
        self.data = expand(copy.deepcopy(scenario.data))
        self.faults = FaultBook(self.data.get("faults", []))
        self._writes: list[dict] = []
        self._writes_lock = threading.Lock()
        self.world_clock = self.clock
        self.changes = ChangeBus()
        self.systems = self._build_systems()
        from omnirecon_sandbox.notify import Notifications
        self.notifications = Notifications(self)
        self.world = self._build_world()
        self._services: dict = {}

    def _build_systems(self) -> dict:
        from omnirecon_sandbox.amazon import AmazonSystem
        from omnirecon_sandbox.netsuite import NetSuiteSystem
        from omnirecon_sandbox.shopify import ShopifySystem
        from omnirecon_sandbox.walmart import WalmartSystem
        kinds = {"shopify": ShopifySystem, "amazon": AmazonSystem, "walmart": WalmartSystem, "erp": NetSuiteSystem}
        return {name: cls(self, self.data[name]) for name, cls in kinds.items() if name in self.data}

    def _build_world(self):
        from omnirecon_sandbox.world import World, has_world
        return World(self) if has_world(self.data) else None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "Sandbox":
        if self._services:
            return self
        for name, system in self.systems.items():
            svc = HttpService(system, self.host, 0)
            system.base_url = svc.url
            svc.start()
            self._services[name] = svc
        self.notifications.start()
        if self.world:
            self.world.start()
        return self

    def stop(self) -> None:
        if self.world:
            self.world.stop()
        self.notifications.stop()
        for svc in self._services.values():
            svc.stop()
        self._services = {}

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- views --------------------------------------------------------------------------------------------
    @property
    def urls(self) -> dict:
        return {name: svc.url for name, svc in self._services.items()}

    def connections(self) -> dict:
        c, urls, out = self.credentials, self.urls, {}
        if "shopify" in urls:
            out["omnirecon_shopify"] = {"conn_type": "omnirecon_shopify", "host": urls["shopify"], "login": None,
                                        "password": c.shopify_access_token, "extra": {"api_version": "2026-01", "client_secret": c.shopify_client_secret}}
        if "amazon" in urls:
            amazon = self.data["amazon"]
            out["omnirecon_amazon"] = {
                "conn_type": "omnirecon_amazon", "host": urls["amazon"], "login": c.amazon_client_id,
                "password": c.amazon_client_secret,
                "extra": {"refresh_token": c.amazon_refresh_token, "lwa_endpoint": urls["amazon"] + "/auth/o2/token",
                          "seller_id": amazon.get("seller_id", "A1SELLERSANDBOX"),
                          "marketplace_id": amazon.get("marketplace_id", "ATVPDKIKX0DER"),
                          "sqs_endpoint": urls["amazon"], "aws_access_key_id": c.aws_access_key_id,
                          "aws_secret_access_key": c.aws_secret_access_key, "aws_region": c.aws_region}}
        if "walmart" in urls:
            out["omnirecon_walmart"] = {"conn_type": "omnirecon_walmart", "host": urls["walmart"],
                                        "login": c.walmart_client_id, "password": c.walmart_client_secret,
                                        "extra": {"svc_name": c.walmart_svc_name}}
        if "erp" in urls:
            out["omnirecon_netsuite"] = {"conn_type": "omnirecon_netsuite", "host": urls["erp"],
                                         "login": c.netsuite_consumer_key, "password": c.netsuite_consumer_secret,
                                         "extra": {"account": self.data["erp"].get("account", "1234567_SB1"),
                                                   "token_id": c.netsuite_token_id,
                                                   "token_secret": c.netsuite_token_secret}}
        return out

    def state(self) -> dict:
        """The whole current state in the scenario format, writes applied (JSON-serialisable copy)."""
        with self.lock:
            view = {k: v for k, v in self.data.items() if k not in self.systems and k != "generate"}
            for name, system in self.systems.items():
                view[name] = system.dump()
            # a JSON round trip is a deep copy several times faster than copy.deepcopy at 100k records
            view = json.loads(json.dumps(view))   # `generate` records are already expanded into the blocks
        if self.world:   # outside the sandbox lock: the world takes its own lock, then this one
            view["world"] = self.world.dump()
        return view

    def writes(self) -> list[dict]:
        with self._writes_lock:
            return copy.deepcopy(self._writes)

    def record_write(self, system: str, operation: str, key, body, applied: bool, query: str | None = None) -> None:
        """One state-changing request: `query` is its raw query string (which account/marketplace it named)."""
        with self._writes_lock:
            self._writes.append({"system": system, "operation": operation, "key": key, "body": body,
                                 "query": query or "", "at": iso(self.clock.now()), "applied": bool(applied)})


def serve(scenario_path: str, time_scale: float, endpoints_file: str | None, state_file: str | None = None) -> None:
    """Blocking: start a sandbox for the scenario file, write its endpoints, run until SIGINT/SIGTERM.

    With `state_file`, the final state (sandbox_state.json) is written there on the way out."""
    from omnirecon_contract.scenario import load
    sb = Sandbox(load(scenario_path), time_scale=time_scale).start()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if endpoints_file:
            tmp = f"{endpoints_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"urls": sb.urls, "connections": sb.connections()}, fh, indent=2)
            os.replace(tmp, endpoints_file)   # readers never see a half-written file
        while not stop.wait(0.5):
            pass
    finally:
        if state_file:
            tmp = f"{state_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(sb.state(), fh, indent=1, default=str)
            os.replace(tmp, state_file)
        sb.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
