"""The local sandbox (the separate `omnirecon-sandbox` package) as a child process.

omnirecon never imports the sandbox: it starts its entry point, reads the endpoints file it writes (URLs and
connection fields) and, on stop, the final state it dumps."""
from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from omnirecon.errors import OmniReconError


class SandboxNotInstalled(OmniReconError):
    pass


def sandbox_command() -> list[str]:
    if importlib.util.find_spec("omnirecon_sandbox") is None:
        raise SandboxNotInstalled("the sandbox is not installed: pip install -e ./contract -e ./sandbox "
                                  "(make install does it)")
    return [sys.executable, "-m", "omnirecon_sandbox"]


class SandboxProcess:
    """`with SandboxProcess(scenario, workdir) as sb:` -> sb.urls, sb.connections; state written on exit."""

    def __init__(self, scenario_path: str, workdir: Path, time_scale: float = 1.0,
                 state_out: Path | None = None, start_timeout_s: float = 60.0):
        self.scenario_path, self.time_scale, self.state_out = scenario_path, time_scale, state_out
        self.workdir = Path(workdir)
        self.endpoints_file = self.workdir / "sandbox-endpoints.json"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.urls: dict = {}
        self.connections: dict = {}

    def start(self) -> "SandboxProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.endpoints_file.unlink(missing_ok=True)
        cmd = [*sandbox_command(), "--scenario", str(self.scenario_path), "--time-scale", str(self.time_scale),
               "--endpoints", str(self.endpoints_file)]
        if self.state_out:
            cmd += ["--state-out", str(self.state_out)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while not self.endpoints_file.exists():
            if self.proc.poll() is not None:
                raise OmniReconError(f"the sandbox exited with code {self.proc.returncode} before serving")
            if time.monotonic() > deadline:
                self.stop()
                raise OmniReconError(f"the sandbox did not start within {self.start_timeout_s:.0f}s")
            time.sleep(0.05)
        doc = json.loads(self.endpoints_file.read_text())
        self.urls, self.connections = doc["urls"], doc["connections"]
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: the sandbox writes its final state (if asked) and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "SandboxProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
