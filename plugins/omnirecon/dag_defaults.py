"""Shared DAG defaults and schedules (kept here so DAG files stay thin)."""
from __future__ import annotations

import os
from datetime import timedelta

from omnirecon.adapters import systems
from omnirecon.config import load_runtime

SNAPSHOT_ASSETS = {s: f"omnirecon://snapshots/{s}" for s in systems()}
FINDINGS_ASSET = "omnirecon://findings"
PENDING_APPROVALS_ASSET = "omnirecon://corrections/pending_approval"
INBOX_ASSET = "omnirecon://ledger/inbox"       # updated by the InboxTrigger's watcher: notifications to take


def runtime_option(key: str):
    """A runtime.yaml option at DAG parse time (local file only, no network). A bad file fails the DAG's import
    with the error naming the field, rather than scheduling on defaults nobody chose."""
    return getattr(load_runtime(), key)


def default_args(**over) -> dict:
    args = {
        "owner": "omnirecon-data-eng",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,          # a multiplier in Airflow 3.3 (True would mean 1.0: no growth)
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=30),
    }
    args.update(over)
    if os.environ.get("OMNIRECON_TASK_RETRIES"):   # the demo runs each task once
        args["retries"] = int(os.environ["OMNIRECON_TASK_RETRIES"])
    return args
