"""Connection form definitions (docs/architecture.md "Connections"), shared by the hooks and provider.py.

Kept free of Airflow imports: provider metadata is read while Airflow itself is starting.
"""
from __future__ import annotations

# conn_type -> (hook name, ui-field-behaviour, extra fields {name: (label, description, default, sensitive)})
CONNECTION_FORMS: dict[str, dict] = {
    "omnirecon_shopify": {
        "hook_name": "Shopify Admin GraphQL (omnirecon)",
        "behaviour": {
            "hidden_fields": ["login", "port", "schema"],
            "relabeling": {"host": "Shop base URL", "password": "Admin API access token"},
            "placeholders": {"host": "https://demo-store.myshopify.com"},
        },
        "extras": {
            "api_version": ("API version", "Admin API version, e.g. 2026-01.", "2026-01", False),
        },
    },
    "omnirecon_amazon": {
        "hook_name": "Amazon SP-API (omnirecon)",
        "behaviour": {
            "hidden_fields": ["port", "schema"],
            "relabeling": {"host": "SP-API endpoint", "login": "LWA client id", "password": "LWA client secret"},
            "placeholders": {"host": "https://sellingpartnerapi-na.amazon.com"},
        },
        "extras": {
            "refresh_token": ("LWA refresh token", "The seller's refresh token (Atzr|...).", None, True),
            "lwa_endpoint": ("LWA token endpoint", "Login with Amazon token URL.",
                             "https://api.amazon.com/auth/o2/token", False),
            "seller_id": ("Seller id", "Merchant token, used in Listings Items paths.", None, False),
            "marketplace_id": ("Marketplace id", "e.g. ATVPDKIKX0DER (US).", "ATVPDKIKX0DER", False),
        },
    },
    "omnirecon_walmart": {
        "hook_name": "Walmart Marketplace (omnirecon)",
        "behaviour": {
            "hidden_fields": ["port", "schema"],
            "relabeling": {"host": "Base URL", "login": "Client id", "password": "Client secret"},
            "placeholders": {"host": "https://marketplace.walmartapis.com"},
        },
        "extras": {
            "svc_name": ("WM_SVC.NAME", "Service name header.", "Walmart Marketplace", False),
            "channel_type": ("WM_CONSUMER.CHANNEL.TYPE", "Channel type from onboarding (optional).", None, False),
        },
    },
    "omnirecon_netsuite": {
        "hook_name": "NetSuite SuiteTalk REST (omnirecon)",
        "behaviour": {
            "hidden_fields": ["port", "schema"],
            "relabeling": {"host": "Base URL", "login": "Consumer key", "password": "Consumer secret"},
            "placeholders": {"host": "https://1234567-sb1.suitetalk.api.netsuite.com"},
        },
        "extras": {
            "account": ("Account (realm)", "e.g. 1234567_SB1.", None, False),
            "token_id": ("Token id", "TBA token id.", None, True),
            "token_secret": ("Token secret", "TBA token secret.", None, True),
        },
    },
}


def provider_conn_fields(conn_type: str) -> dict:
    """Declarative `conn-fields` (Airflow 3.2+ provider metadata) for one connection type."""
    out = {}
    for name, (label, description, default, sensitive) in CONNECTION_FORMS[conn_type]["extras"].items():
        schema: dict = {"type": ["string", "null"]}
        if default is not None:
            schema["default"] = default
        if sensitive:
            schema["format"] = "password"
        out[name] = {"label": label, "description": description, "schema": schema}
    return out


def provider_ui_behaviour(conn_type: str) -> dict:
    b = CONNECTION_FORMS[conn_type]["behaviour"]
    return {"hidden-fields": b["hidden_fields"], "relabeling": b["relabeling"], "placeholders": b["placeholders"]}
