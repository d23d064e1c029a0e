"""`omnirecon demo --live DURATION`: the duration's forms, a bad one refused before anything starts, and the
connections the live path gets (real-time pacing, a NetSuite deployment secret of its own)."""
import pytest

from omnirecon.cli import main
from omnirecon.errors import ConfigError
from omnirecon.live_demo import live_connections, parse_duration


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("120", 120),
                                           ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "0s", "-1m", "5m junk"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_the_cli_refuses_a_bad_duration_with_exit_2_and_one_line(tmp_path, capsys):
    assert main(["demo", "--live", "soon", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--live 'soon'" in err
    assert not (tmp_path / "out").exists()          # nothing started, nothing written


def test_live_connections_pace_in_real_time_and_give_netsuite_a_webhook_secret():
    sandbox = {"omnirecon_netsuite": {"conn_type": "omnirecon_netsuite", "host": "http://x", "extra": {"account": "A"}},
               "omnirecon_shopify": {"conn_type": "omnirecon_shopify", "host": "http://y", "extra": {"client_secret": "s"}}}
    a, b = live_connections(sandbox), live_connections(sandbox)
    assert all(c["extra"]["time_scale"] == 1.0 for c in a.values())
    assert a["omnirecon_netsuite"]["extra"]["account"] == "A" and len(a["omnirecon_netsuite"]["extra"]["webhook_secret"]) >= 16
    assert a["omnirecon_netsuite"]["extra"]["webhook_secret"] != b["omnirecon_netsuite"]["extra"]["webhook_secret"]
    assert "webhook_secret" not in sandbox["omnirecon_netsuite"]["extra"]      # the sandbox's own fields untouched


def test_approve_all_is_refused_with_live(tmp_path, capsys):
    assert main(["demo", "--live", "90s", "--approve-all", "--out", str(tmp_path / "out")]) == 2
    assert "--approve-all" in capsys.readouterr().err
