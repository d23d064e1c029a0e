"""omnirecon_sandbox.serve: the blocking CLI entry point, run in a child process and stopped with SIGTERM."""
import json
import signal
import subprocess
import sys
import time

import requests
import yaml

from tests.support.sandbox_http import scenario_doc


def test_serve_writes_endpoints_and_stops_on_sigterm(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(scenario_doc()))
    endpoints = tmp_path / "endpoints.json"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from omnirecon_sandbox import serve; "
                             "serve(sys.argv[1], 0.01, sys.argv[2])", str(scenario), str(endpoints)])
    try:
        for _ in range(300):
            if endpoints.exists() and endpoints.stat().st_size:
                break
            time.sleep(0.05)
        info = json.loads(endpoints.read_text())
        assert set(info["urls"]) == {"erp", "shopify", "amazon", "walmart"}
        assert set(info["connections"]) == {"omnirecon_shopify", "omnirecon_amazon", "omnirecon_walmart", "omnirecon_netsuite"}
        assert info["connections"]["omnirecon_netsuite"]["extra"]["account"] == "1234567_SB1"
        state = requests.get(info["urls"]["erp"] + "/_sandbox/state", timeout=10).json()
        assert state["erp"]["items"][0]["itemid"] == "TEE-BLK-M"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
