"""omnirecon's Airflow plugin: a server-rendered view (drift, open findings, pending approvals, snapshot ages,
latest report) mounted in the API server at /omnirecon and listed in the Airflow UI's navigation; and a listener
that has a LocalExecutor's scheduler import the reconcile path before it forks its workers."""
import multiprocessing
import sys

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class SchedulerPreload:
    """The LocalExecutor forks its workers from the scheduler (Airflow's default start method, fork) and each task
    process from a worker: what the scheduler imported before, every task inherits (bench/README.md, fixed cost).
    `on_starting` runs when the scheduler's Job is made, before its executor starts."""

    @hookimpl
    def on_starting(self, component):
        if is_local_scheduler():
            import omnirecon.checks.preload  # noqa: F401


def is_local_scheduler() -> bool:
    """This process is `airflow scheduler` (the Job is not typed yet when listeners hear of it) running a
    LocalExecutor that forks its workers from it (with forkserver they come from mp_forkserver_preload)."""
    from airflow.configuration import conf
    return (sys.argv[1:2] == ["scheduler"] and "LocalExecutor" in conf.get("core", "executor")
            and multiprocessing.get_start_method(allow_none=True) in (None, "fork"))


class OmniReconPlugin(AirflowPlugin):
    name = "omnirecon"
    external_views = [{
        "name": "omnirecon",
        "href": "/omnirecon/",
        "url_route": "omnirecon",        # shown inside the UI at /plugin/omnirecon
        "destination": "nav",
        "nav_top_level": True,           # its own entry in the left navigation, not under "Plugins"
    }]
    listeners = [SchedulerPreload()]

    @property
    def fastapi_apps(self) -> list[dict]:
        # Built on first use, in the API server only: schedulers and workers that load plugins import no FastAPI.
        from omnirecon.ui.app import URL_PREFIX, get_app
        return [{"app": get_app(), "url_prefix": URL_PREFIX, "name": "omnirecon"}]
