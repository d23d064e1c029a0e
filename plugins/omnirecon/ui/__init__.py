"""The omnirecon view inside the Airflow UI (see omnirecon.airflow_plugin)."""
