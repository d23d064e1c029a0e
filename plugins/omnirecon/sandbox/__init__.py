"""Local imitations of Shopify, Amazon SP-API, Walmart Marketplace and NetSuite, served over real HTTP."""
from omnirecon.sandbox.core import Sandbox, SandboxOptions, serve
from omnirecon.sandbox.credentials import SandboxCredentials

__all__ = ["Sandbox", "SandboxOptions", "SandboxCredentials", "serve"]
