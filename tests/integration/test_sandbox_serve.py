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


def test_entry_point_writes_the_final_state_on_sigterm_and_omnirecon_reaches_it_as_a_child(tmp_path):
    """omnirecon never imports the sandbox: SandboxProcess runs its entry point and reads what it writes."""
    from omnirecon.sandbox_process import SandboxProcess
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(scenario_doc()))
    state_file = tmp_path / "sandbox_state.json"
    with SandboxProcess(str(scenario), tmp_path / "work", time_scale=0.01, state_out=state_file) as sb:
        assert set(sb.urls) == {"erp", "shopify", "amazon", "walmart"}
        token = requests.post(sb.urls["walmart"] + "/v3/token", data={"grant_type": "client_credentials"},
                              auth=(sb.connections["omnirecon_walmart"]["login"],
                                    sb.connections["omnirecon_walmart"]["password"]),
                              headers={"WM_SVC.NAME": "Walmart Marketplace", "WM_QOS.CORRELATION_ID": "t",
                                       "Accept": "application/json"}, timeout=10)
        assert token.status_code == 200, token.text
        assert not state_file.exists()
    state = json.loads(state_file.read_text())
    assert state["erp"]["items"][0]["itemid"] == "TEE-BLK-M" and state["name"] == scenario_doc()["name"]


def test_a_bad_scenario_stops_the_entry_point_with_the_path_of_the_field(tmp_path):
    doc = scenario_doc()
    doc["erp"]["items"][0]["locations"][0]["on_hand"] = -1
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    r = subprocess.run([sys.executable, "-m", "omnirecon_sandbox", "--scenario", str(scenario)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "erp.items[0].locations[0].on_hand" in r.stderr
