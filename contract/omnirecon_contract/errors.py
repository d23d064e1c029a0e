"""The error a bad scenario or configuration raises."""


class ConfigError(ValueError):
    """Bad scenario or configuration. The message starts with the path of the bad field."""
