"""The error a bad scenario or configuration raises."""


class ConfigError(ValueError):
    """Bad scenario or configuration. The message starts with the path of the bad field."""


def parse_error(path, e: Exception) -> ConfigError:
    """A YAML or JSON syntax error as `FILE:LINE:COL: message` (1-based), the file named once."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:                                     # yaml.MarkedYAMLError
        what = "; ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
        return ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {what}".rstrip(": "))
    if hasattr(e, "lineno") and hasattr(e, "colno"):         # json.JSONDecodeError
        return ConfigError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}")
    return ConfigError(f"{path}: {e}")
