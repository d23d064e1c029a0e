"""Errors a user sees: each names what is wrong and where."""
from omnirecon_contract.errors import ConfigError, parse_error  # bad scenario or configuration (shared with the sandbox)


class OmniReconError(Exception):
    """Base class; the CLI prints str(e) as a one-line reason."""


class SnapshotFailed(OmniReconError):
    """A snapshot could not be taken completely; nothing of it becomes visible."""


__all__ = ["ConfigError", "OmniReconError", "SnapshotFailed", "parse_error"]
