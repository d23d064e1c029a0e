"""Reading an Airflow connection: "not defined" is an answer, any other failure is an error naming the connection."""
from __future__ import annotations


class ConnectionProblem(RuntimeError):
    """A connection exists (or may exist) but cannot be read or used."""


def find_connection(conn_id: str):
    """The Airflow connection `conn_id`, or None when it is not defined (or Airflow is not installed). A secrets
    backend or metadata database that fails, or a malformed connection, raises ConnectionProblem."""
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as e:
        raise ConnectionProblem(f"connection {conn_id} cannot be read: {type(e).__name__}: {e}") from e


def connection_exists(conn_id: str) -> bool:
    return find_connection(conn_id) is not None
