"""The generated Airflow home is complete on its own: shared keys, encrypted connections, connection testing,
parallelism sized to the machine."""
import configparser
import stat

from omnirecon import airflow_setup


def _cfg(home) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(home / "airflow.cfg")
    return cp


def test_cfg_has_shared_keys_kept_across_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    airflow_setup.write_cfg()
    first = _cfg(tmp_path)
    assert len(first["api_auth"]["jwt_secret"]) >= 32
    assert len(first["api"]["secret_key"]) >= 32
    from cryptography.fernet import Fernet
    token = Fernet(first["core"]["fernet_key"].encode()).encrypt(b"x")   # a valid Fernet key
    assert first["core"]["test_connection"] == "Enabled"
    airflow_setup.write_cfg()   # every `omnirecon up` / `make airflow-init` rewrites the file
    second = _cfg(tmp_path)
    for section, key in (("api_auth", "jwt_secret"), ("core", "fernet_key"), ("api", "secret_key")):
        assert second[section][key] == first[section][key]
    assert Fernet(second["core"]["fernet_key"].encode()).decrypt(token) == b"x"
    for name in ("airflow.cfg", airflow_setup.SECRETS_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_each_home_gets_its_own_keys(tmp_path, monkeypatch):
    keys = []
    for name in ("a", "b"):
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / name))
        airflow_setup.write_cfg()
        keys.append(_cfg(tmp_path / name)["api_auth"]["jwt_secret"])
    assert keys[0] != keys[1]


def test_parallelism_follows_the_cores(tmp_path, monkeypatch):
    assert airflow_setup.parallelism(1) == 4
    assert airflow_setup.parallelism(2) == 4
    assert airflow_setup.parallelism(8) == 16
    assert airflow_setup.parallelism(64) == 32
    monkeypatch.setattr(airflow_setup.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    airflow_setup.write_cfg()
    assert _cfg(tmp_path)["core"]["parallelism"] == "4"
