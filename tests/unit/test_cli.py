"""The `omnirecon` command: version, validation, and the demo's exit code for a bad scenario."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "omnirecon.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, **kw)


def test_version():
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("omnirecon ")


def test_validate_ok(demo_scenario_path):
    r = run("validate", str(demo_scenario_path))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_bad_scenario_exit_code_and_one_line_reason(tmp_path, demo_scenario_path):
    doc = yaml.safe_load(demo_scenario_path.read_text())
    doc["erp"]["items"][3]["locations"][0]["on_hand"] = -4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    for args in (("validate", str(bad)), ("demo", "--scenario", str(bad), "--out", str(tmp_path / "out"))):
        r = run(*args)
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "erp.items[3].locations[0].on_hand: must be an integer >= 0" in lines[0]
    assert not (tmp_path / "out" / "findings.csv").exists()


def test_yaml_syntax_error_names_file_line_and_column_once(tmp_path):
    """scenario, settings and runtime files: `FILE:LINE:COL: message`, the path once, the line that is wrong."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: demo\nerp: [1, 2\nsettings: {}\n")
    for args in (("validate", str(bad)), ("validate", "--settings", str(bad))):
        r = run(*args)
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"omnirecon: {bad}:4:9: not valid YAML"), lines[0]
        assert lines[0].count(str(bad)) == 1


def test_runtime_and_json_syntax_errors_are_located(tmp_path):
    from omnirecon_contract import scenario
    from omnirecon.config import load_runtime
    from omnirecon.errors import ConfigError
    import pytest
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("mode: apply\n  report_time: '07:00'\n")
    with pytest.raises(ConfigError) as e:
        load_runtime(runtime)
    assert str(e.value).startswith(f"{runtime}:2:") and str(e.value).count(str(runtime)) == 1
    js = tmp_path / "bad.json"
    js.write_text('{"version": 1,\n "name": }\n')
    with pytest.raises(ConfigError) as e:
        scenario.load(js)
    assert str(e.value) == f"{js}:2:10: not valid JSON: Expecting value"
