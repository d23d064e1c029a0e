"""Local imitations of Shopify, Amazon SP-API, Walmart Marketplace and NetSuite, served over real HTTP."""
from omnirecon_sandbox.core import Sandbox, SandboxOptions, serve
from omnirecon_sandbox.credentials import SandboxCredentials

__all__ = ["Sandbox", "SandboxOptions", "SandboxCredentials", "serve"]
