"""Reconciliation checks: canonical expectations from the ERP, GX suites, diagnosis, evidence, findings."""
from omnirecon.checks.run import ReconcileResult, reconcile
from omnirecon.checks.suites import export_suites

__all__ = ["ReconcileResult", "reconcile", "export_suites"]
