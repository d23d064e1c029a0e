from omnirecon.model.canonical import *  # noqa: F401,F403
