"""Settings from flags and environment: precedence, and errors that name the setting."""

from __future__ import annotations

import pytest

from datastorage.config import ConfigError, load_database_url, load_settings, redact_url

URLS = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_flags_win_over_the_environment() -> None:
    settings = load_settings({"port": "9000", "dlq_max_len": "50"}, {**URLS, "DATASTORAGE_PORT": "8000"})
    assert settings.port == 9000
    assert settings.dlq.max_len == 50


def test_the_environment_fills_what_flags_leave_out() -> None:
    settings = load_settings({}, {**URLS, "DATASTORAGE_MAX_BODY_BYTES": "1024"})
    assert settings.max_body_bytes == 1024
    assert settings.port == 8080


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        pytest.param({}, {"REDIS_URL": URLS["REDIS_URL"]}, "DATABASE_URL is not set", id="missing-database"),
        pytest.param({}, {"DATABASE_URL": URLS["DATABASE_URL"]}, "REDIS_URL is not set", id="missing-redis"),
        pytest.param({"port": "0"}, URLS, "--port='0'", id="port-zero"),
        pytest.param(
            {}, {**URLS, "DATASTORAGE_PORT": "http"}, "DATASTORAGE_PORT='http'", id="port-not-number"
        ),
        pytest.param(
            {}, {**URLS, "DATABASE_URL": "mysql://x/y"}, "DATABASE_URL='mysql://x/y'", id="wrong-scheme"
        ),
        pytest.param({"dlq_max_len": "-5"}, URLS, "--dlq-max-len='-5'", id="negative-capacity"),
        pytest.param({"log_level": "loud"}, URLS, "--log-level='loud'", id="unknown-level"),
    ],
)
def test_a_bad_setting_is_named_in_the_error(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        load_settings(flags, environ)


def test_passwords_are_hidden_in_messages() -> None:
    assert redact_url("postgresql://user:s3cret@db:5432/x") == "postgresql://user:***@db:5432/x"
    with pytest.raises(ConfigError) as refused:
        load_settings({}, {**URLS, "DATABASE_URL": "mysql://user:s3cret@db/x"})
    assert "s3cret" not in str(refused.value)


def test_migrating_needs_only_the_database_url() -> None:
    assert load_database_url({}, {"DATABASE_URL": URLS["DATABASE_URL"]}) == URLS["DATABASE_URL"]
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        load_database_url({}, {"REDIS_URL": URLS["REDIS_URL"]})
