"""Import Great Expectations without the modules our suites never run.

`import great_expectations` executes every core expectation module, and one of them (KL divergence) imports
scipy.stats and altair at module scope: about half of GX's import time, for an expectation omnirecon does not
use. GX offers no narrower import (any submodule runs the package's __init__), so those two modules are
registered as deferred placeholders while GX imports: an attribute read loads the real module then, so an
expectation that does need them still works, it just pays the import when it first runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types

DEFERRED = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module not imported yet; the first attribute read imports it."""

    def __getattr__(self, attr):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def _defer(name: str) -> None:
    if name in sys.modules:
        return
    parent = name.rpartition(".")[0]
    if parent:
        importlib.import_module(parent)   # cheap parents (scipy) stay real: find_spec needs their __path__
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stub = _Deferred(name)
    stub.__spec__, stub.__loader__, stub.__file__ = spec, spec.loader, spec.origin
    sys.modules[name] = stub


def import_gx():
    """The great_expectations package, imported once per process with the heavy unused modules deferred."""
    gx = sys.modules.get("great_expectations")
    if gx is not None and hasattr(gx, "get_context"):
        return gx
    # GX logs every API it registers (hundreds of lines under Airflow's INFO logging)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name in DEFERRED:
        _defer(name)
    import great_expectations as gx
    import great_expectations.expectations  # noqa: F401  (the suites' expectation classes)
    return gx


def is_deferred(name: str) -> bool:
    return isinstance(sys.modules.get(name), _Deferred)
