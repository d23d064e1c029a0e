"""Links into the Airflow UI for ledger runs (alerts, reports and the deadline alert point at them)."""
from __future__ import annotations

from urllib.parse import quote

from omnirecon.ledger.queries import airflow_ids


def run_url(settings, dag_id: str, airflow_run_id: str) -> str:
    base = str(settings.runtime.get("airflow_base_url") or "").rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(airflow_run_id, safe='')}"


def run_link(settings, run, run_id: str) -> str:
    """The run's page in the Airflow UI."""
    return run_url(settings, *airflow_ids(run, run_id))
