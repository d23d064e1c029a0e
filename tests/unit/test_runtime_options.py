"""Runtime options (include/config/runtime.yaml): every field typed and validated, errors naming the field."""
import dataclasses

import pytest
import yaml

from omnirecon.config import DEFAULT_RUNTIME, RuntimeOptions, load_runtime, load_settings, settings_from_dict
from omnirecon.dag_defaults import runtime_option
from omnirecon.errors import ConfigError


@pytest.mark.parametrize("key, value, message", [
    ("report_time", "7am", "runtime.report_time: must be HH:MM"),
    ("report_time", "24:00", "runtime.report_time: must be HH:MM"),
    ("report_time", 700, "runtime.report_time: must be HH:MM"),
    ("report_timezone", "Mars/Olympus", "runtime.report_timezone: must be an IANA time zone"),
    ("report_timezone", "../etc/passwd", "runtime.report_timezone: must be an IANA time zone"),
    ("snapshot_schedule", "61 * * * *", "runtime.snapshot_schedule: must be a cron expression"),
    ("reconcile_schedule", "every 15 minutes", "runtime.reconcile_schedule: must be a cron expression"),
    ("reconcile_schedule", "0 * * * * *", "runtime.reconcile_schedule: must be a cron expression"),
    ("approval_timeout_minutes", 0, "runtime.approval_timeout_minutes: must be an integer > 0"),
    ("approval_timeout_minutes", "240", "runtime.approval_timeout_minutes: must be an integer"),
    ("approval_timeout_minutes", 2.5, "runtime.approval_timeout_minutes: must be an integer"),
    ("alert_reminder_hours", -1, "runtime.alert_reminder_hours: must be a number > 0"),
    ("alert_recipients", "ops@example.com", "runtime.alert_recipients: must be a list of e-mail addresses"),
    ("report_recipients", ["not an address"], "runtime.report_recipients: must be a list of e-mail addresses"),
    ("slack_channel", "general channel", "runtime.slack_channel: must be a channel name"),
    ("airflow_base_url", "localhost:8080", "runtime.airflow_base_url: must be an http(s) URL"),
    ("max_quarantine_fraction", 1.5, "runtime.max_quarantine_fraction: must be a number >= 0 and <= 1"),
    ("reconcile_max_shards", True, "runtime.reconcile_max_shards: must be an integer"),
    ("mode", "yolo", "runtime.mode: must be one of apply, dry-run"),
    ("approval_timeout_default", "maybe", "runtime.approval_timeout_default: must be one of reject, approve"),
    ("typo_key", 1, "runtime.typo_key: unknown key"),
])
def test_each_bad_option_is_named(key, value, message):
    with pytest.raises(ConfigError) as e:
        RuntimeOptions.from_mapping({key: value})
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("key, value", [
    ("report_time", "23:59"), ("report_timezone", "America/New_York"), ("snapshot_schedule", "@hourly"),
    ("reconcile_schedule", "5,20,35,50 * * * *"), ("approval_timeout_minutes", 1), ("slack_channel", "#ops-alerts"),
    ("slack_channel", "C0123456789"), ("alert_recipients", ["ops@example.com"]), ("alert_reminder_hours", 0.5),
])
def test_good_options_are_kept_typed(key, value):
    opts = RuntimeOptions.from_mapping({key: value})
    assert getattr(opts, key) == (tuple(value) if isinstance(value, list) else value)


def test_every_error_is_reported_once():
    with pytest.raises(ConfigError) as e:
        RuntimeOptions.from_mapping({"report_time": "7am", "report_timezone": "Nowhere"})
    assert "runtime.report_time" in str(e.value) and "runtime.report_timezone" in str(e.value)
    assert "(and 1 more" in str(e.value)


def test_runtime_file_errors_name_the_file_and_field(tmp_path, monkeypatch):
    r = tmp_path / "runtime.yaml"
    r.write_text("report_time: '7:5'\n")
    with pytest.raises(ConfigError) as e:
        load_runtime(r)
    assert str(e.value).startswith(f"{r}: runtime.report_time: must be HH:MM")
    # the DAG files read options through the same validation: a bad file fails their import, naming the field
    monkeypatch.setenv("OMNIRECON_RUNTIME", str(r))
    with pytest.raises(ConfigError, match="runtime.report_time"):
        runtime_option("report_time")


def test_defaults_file_and_settings_agree(tmp_path):
    project = load_runtime()
    assert isinstance(project, RuntimeOptions) and project == RuntimeOptions.from_mapping(DEFAULT_RUNTIME)
    s = settings_from_dict({}, {"mode": "dry-run", "alert_recipients": ["a@example.com"]})
    assert s.runtime.mode == "dry-run" and s.runtime.approvers == ("a@example.com",)
    assert s.runtime["mode"] == "dry-run" and s.runtime.get("nope", 3) == 3
    with pytest.raises(ConfigError, match="runtime.mode"):       # a changed copy is validated again
        dataclasses.replace(s, runtime={**s.runtime, "mode": "yolo"})
    yaml.safe_dump(s.runtime.to_dict())                         # plain data (a test or tool writes it back)


def test_load_settings_uses_the_validated_runtime(tmp_path):
    p, r = tmp_path / "retailer.yaml", tmp_path / "runtime.yaml"
    p.write_text("{}\n")
    r.write_text("approval_timeout_minutes: -5\n")
    with pytest.raises(ConfigError, match=r"runtime.approval_timeout_minutes: must be an integer > 0"):
        load_settings(p, runtime_path=r)
