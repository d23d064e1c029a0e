"""What a reconcile task imports, for an executor's long-lived worker parent to import once.

Every Airflow task runs in a process forked from its executor's worker, so modules the worker already holds
cost the task nothing. The scheduler imports it before it forks the LocalExecutor's workers
(airflow_plugin.SchedulerPreload); `omnirecon airflow-init` names it in the scheduler's forkserver preload and in
Celery's `imports` (airflow_setup.write_cfg): a Celery worker's pool processes start from a process that imported it. Importing it has no other effect (no context, no connection, no thread).

It ends with gc.freeze(): what it imported lives as long as the process, and the cyclic collector then leaves it
out, so a full collection in a forked task walks only the task's own objects, not the ~300,000 preloaded ones
(~0.3 s of CPU each time in every task, and it wrote to, and so un-shared, every page holding them).
"""
from omnirecon.checks.gx_import import import_gx

import_gx()

import omnirecon.checks.run  # noqa: E402,F401  (pandas, SQLAlchemy, the ledger, the checks)
import great_expectations.core.run_identifier  # noqa: E402,F401  (imported inside SuiteRunner.run)
import great_expectations.data_context.types.base  # noqa: E402,F401
import great_expectations.data_context.types.resource_identifiers  # noqa: E402,F401  (Data Docs of a run)
import adbc_driver_sqlite.dbapi  # noqa: E402,F401  (snapshot rows of a SQLite ledger, checks/load.py)

# what the DAG files import from Airflow (every task process parses its DAG file again)
import airflow.sdk  # noqa: E402,F401
import airflow.timetables.assets  # noqa: E402,F401
import airflow.timetables.trigger  # noqa: E402,F401

import gc  # noqa: E402

gc.freeze()
