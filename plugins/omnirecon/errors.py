"""Errors a user sees: each names what is wrong and where."""


class OmniReconError(Exception):
    """Base class; the CLI prints str(e) as a one-line reason."""


class ConfigError(OmniReconError):
    """Bad scenario or configuration. The message starts with the path of the bad field."""


class SnapshotFailed(OmniReconError):
    """A snapshot could not be taken completely; nothing of it becomes visible."""
