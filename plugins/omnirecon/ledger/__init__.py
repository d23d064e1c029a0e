from omnirecon.ledger.db import Ledger, ledger_url, get_ledger  # noqa: F401
