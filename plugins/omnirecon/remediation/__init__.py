"""Remediation: the correction outbox, guardrails, approvals, pushes with read-back, alerts."""
