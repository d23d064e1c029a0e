"""omnirecon's Airflow plugin (an Airflow 3 UI view; deepened by the UI issue)."""
from airflow.plugins_manager import AirflowPlugin


class OmniReconPlugin(AirflowPlugin):
    name = "omnirecon"
