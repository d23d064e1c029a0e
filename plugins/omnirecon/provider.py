"""Airflow provider metadata (entry point `apache_airflow_provider`): the four connection types in the UI."""
from __future__ import annotations

from omnirecon.adapters import all_adapters
from omnirecon.hooks.fields import CONNECTION_FORMS, provider_conn_fields, provider_ui_behaviour

HOOK_CLASSES = {a.conn_type: a.hook_path for a in all_adapters()}   # one per connection type


def get_provider_info() -> dict:
    from omnirecon import __version__
    return {
        "package-name": "omnirecon",
        "name": "omnirecon",
        "description": "Reconciliation of inventory and order status across Shopify, Amazon SP-API, "
                       "Walmart Marketplace and NetSuite.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": conn_type,
                "hook-class-name": HOOK_CLASSES[conn_type],
                "hook-name": CONNECTION_FORMS[conn_type]["hook_name"],
                "ui-field-behaviour": provider_ui_behaviour(conn_type),
                "conn-fields": provider_conn_fields(conn_type),
            }
            for conn_type in HOOK_CLASSES
        ],
    }
