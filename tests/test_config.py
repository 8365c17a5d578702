"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from idnode.config import CONFIG_FILE, Config, dump_toml, load_config
from idnode.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.handle_port == 2641
    assert config.http_port == 8000
    assert config.database_url == f"sqlite:///{(tmp_path / 'idnode.db').resolve()}"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(dump_toml({"http_port": 9000, "handle_port": 3000}))
    env = {"IDNODE_HTTP_PORT": "9100", "IDNODE_WORKERS": "3", "UNRELATED": "x"}
    config = load_config(tmp_path, {"workers": 4, "host": None}, environ=env)
    assert config.handle_port == 3000  # file
    assert config.http_port == 9100  # environment beats file
    assert config.workers == 4  # override beats environment
    assert config.host == "127.0.0.1"  # None means "not given"


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("http_prot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*http_prot"):
        load_config(tmp_path, environ={})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("this is = = not toml")
    with pytest.raises(ConfigError, match=CONFIG_FILE):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("http_port", "70000", "http_port must be"),
        ("workers", "0", "workers must be"),
        ("udp_max_response", "10", "udp_max_response"),
        ("log_level", "loud", "log_level"),
        ("handle_port", "many", "cannot use 'many' as int"),
        ("site_share", "3/2", "1 <= N <= M"),
        ("site_share", "half", "a share is N/M"),
        ("site_hash", "md5", "site_hash must be"),
        ("anonymous_reads", "all", "anonymous_reads must be public or challenge"),
        ("session_cipher", "des", "session_cipher must be sm4 or aes"),
    ],
)
def test_invalid_values(tmp_path: Path, setting: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={f"IDNODE_{setting.upper()}": value})


def test_wildcard_host_advertises_loopback() -> None:
    assert Config(host="0.0.0.0").advertised_address == "127.0.0.1"
    assert Config(host="0.0.0.0", public_address="192.0.2.1").advertised_address == "192.0.2.1"


def test_dump_toml_round_trips(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(dump_toml({"host": 'a"b\\c', "workers": 2}))
    config = load_config(tmp_path, environ={})
    assert config.host == 'a"b\\c'
    assert config.workers == 2
