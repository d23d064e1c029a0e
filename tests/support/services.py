"""The services the suite talks to over real connections (PostgreSQL, Redis), and project paths."""
from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"

PG_DSN = os.environ.get("OMNIRECON_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int, how: str) -> None:
    """Skip locally with a reason saying how to start the service; in CI a missing service is a failure."""
    if _port_open(host, port):
        return
    msg = f"{name} is not answering on {host}:{port}; start it with: {how}"
    if IN_CI:
        pytest.fail(msg + " (mandatory in CI)")
    pytest.skip(msg)


@contextmanager
def temp_pg_database(prefix: str = "omnirecon_test"):
    """A fresh PostgreSQL database (URL), dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432,
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    import sqlalchemy as sa
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_DSN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
