"""omnirecon's Airflow plugin: a server-rendered view (drift, open findings, pending approvals, snapshot ages,
latest report) mounted in the API server at /omnirecon and listed in the Airflow UI's navigation."""
from airflow.plugins_manager import AirflowPlugin


class OmniReconPlugin(AirflowPlugin):
    name = "omnirecon"
    external_views = [{
        "name": "omnirecon",
        "href": "/omnirecon/",
        "url_route": "omnirecon",        # shown inside the UI at /plugin/omnirecon
        "destination": "nav",
        "nav_top_level": True,           # its own entry in the left navigation, not under "Plugins"
    }]

    @property
    def fastapi_apps(self) -> list[dict]:
        # Built on first use, in the API server only: schedulers and workers that load plugins import no FastAPI.
        from omnirecon.ui.app import URL_PREFIX, get_app
        return [{"app": get_app(), "url_prefix": URL_PREFIX, "name": "omnirecon"}]
