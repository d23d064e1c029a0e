"""Shared fixtures: ledgers (SQLite always; PostgreSQL mandatory in CI), services, scenarios, stand-ins."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.services import IN_CI, PG_DSN, ROOT, SHARED, require_service, temp_pg_database  # noqa: F401
from tests.support.smtp import smtp  # noqa: F401  (fixture: a local SMTP server as smtp_default)

os.environ.setdefault("OMNIRECON_HOME", str(ROOT))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))


@pytest.fixture
def sqlite_ledger(tmp_path):
    from omnirecon.ledger import Ledger
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.migrate()
    return led


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test."""
    with temp_pg_database() as url:
        yield url


@pytest.fixture
def pg_ledger(pg_url):
    from omnirecon.ledger import Ledger
    led = Ledger(pg_url)
    led.migrate()
    yield led
    led.engine.dispose()


@pytest.fixture
def redis_url():
    require_service("Redis", "127.0.0.1", 6379,
                    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no')
    return "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def demo_scenario_path() -> Path:
    return ROOT / "include" / "scenarios" / "demo.yaml"


@pytest.fixture
def shared_reference() -> Path:
    ref = SHARED / "reference"
    if not ref.exists():
        pytest.skip(f"{ref} is absent: the contract tests need ../shared/reference beside the checkout")
    return ref
