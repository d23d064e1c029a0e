"""Connectors (Airflow hooks) for the four systems, on the shared HTTP core in `base.py`."""
from __future__ import annotations

SYSTEM_HOOKS = {
    "shopify": "omnirecon.hooks.shopify.ShopifyHook",
    "amazon": "omnirecon.hooks.amazon.AmazonSPAPIHook",
    "walmart": "omnirecon.hooks.walmart.WalmartHook",
    "erp": "omnirecon.hooks.netsuite.NetSuiteHook",
}
CONN_IDS = {"shopify": "omnirecon_shopify", "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart",
            "erp": "omnirecon_netsuite"}


def hook_class(system: str):
    """The hook class of a system (erp, shopify, amazon, walmart)."""
    import importlib
    try:
        path = SYSTEM_HOOKS[system]
    except KeyError:
        raise ValueError(f"unknown system {system!r} (expected one of {', '.join(SYSTEM_HOOKS)})") from None
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def get_hook(system: str, conn_id: str | None = None, **kwargs):
    """A hook reading its Airflow connection (default conn id of the system)."""
    return hook_class(system)(conn_id or CONN_IDS[system], **kwargs)


def hook_from_fields(system: str, fields: dict, **kwargs):
    """A hook from plain connection fields, e.g. one entry of `Sandbox.connections()`."""
    f = {k: v for k, v in fields.items() if k in ("host", "login", "password", "extra", "port", "schema")}
    return hook_class(system).from_fields(**f, **kwargs)


ACCOUNT_EXTRAS = {"amazon": ("seller_id", "marketplace_id")}   # per-account ids the retailer settings may give


def apply_account_settings(hook, system: str, settings):
    """Give a hook the retailer's per-account settings (Amazon: seller and marketplace): the one place that does,
    for snapshot reads, writes and read-backs alike. The connection's own extras win; a connection that names a
    different account than the settings is an error, never a silent choice."""
    names = ACCOUNT_EXTRAS.get(system, ())
    if not names:
        return hook
    channel = ((settings.get("channels") if settings is not None else None) or {}).get(system) or {}
    wanted = {k: str(channel[k]) for k in names if channel.get(k)}
    fields = getattr(hook, "fields", None) if hasattr(type(hook), "fields") else None
    extra = (fields or {}).get("extra") or {}
    for name, value in wanted.items():
        have = extra.get(name) or extra.get(f"extra__{getattr(hook, 'conn_type', '')}__{name}")
        if have not in (None, "") and str(have) != value:
            raise ValueError(f"connection {getattr(hook, 'conn_id', system)}: extra {name} is {have!r} but the "
                             f"retailer settings say channels.{system}.{name} = {value!r}")
    hook.fallback_extras = wanted
    return hook
