"""The scenario contract shared by omnirecon and its sandbox (shared/contracts/scenario.md, world.md).

Only what both sides must agree on lives here: loading and validating a scenario file, its JSON Schema, the
time offsets it uses, and the error a bad one raises. Nothing here imports omnirecon or the sandbox.
"""
from omnirecon_contract.errors import ConfigError
from omnirecon_contract.scenario import CHANNELS, SYSTEMS, Scenario, from_dict, load, read_file

__all__ = ["CHANNELS", "SYSTEMS", "ConfigError", "Scenario", "from_dict", "load", "read_file"]
