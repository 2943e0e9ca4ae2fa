"""Settings from flags and environment: precedence, and errors that name the setting."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from datastorage.config import ConfigError, RetentionSettings, load_database_url, load_settings, redact_url

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
        pytest.param(
            {},
            {**URLS, "DATASTORAGE_RATE_LIMIT_ENABLED": "yes"},
            "DATASTORAGE_RATE_LIMIT_ENABLED='yes' is invalid: must be true or false",
            id="rate-limit-switch",
        ),
        pytest.param({"rate_limit_rps": "0"}, URLS, "--rate-limit-rps='0'", id="rate-zero"),
        pytest.param({"rate_limit_rps": "nan"}, URLS, "--rate-limit-rps='nan'", id="rate-nan"),
        pytest.param({"rate_limit_burst": "0"}, URLS, "--rate-limit-burst='0'", id="burst-zero"),
        pytest.param(
            {"rate_limit_max_clients": "many"}, URLS, "--rate-limit-max-clients", id="cap-not-number"
        ),
        pytest.param(
            {},
            {**URLS, "DATASTORAGE_RATE_LIMIT_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"},
            "DATASTORAGE_RATE_LIMIT_TRUSTED_PROXIES='10.0.0.0/8,proxy.local' is invalid: 'proxy.local'",
            id="proxy-not-an-address",
        ),
        pytest.param(
            {"retention_default_days": "2556"},
            URLS,
            "--retention-default-days='2556' is invalid: must be between 1 and 2555 days",
            id="retention-beyond-7-years",
        ),
        pytest.param(
            {},
            {**URLS, "DATASTORAGE_RETENTION_INTERVAL": "24h"},
            "DATASTORAGE_RETENTION_INTERVAL",
            id="interval",
        ),
        pytest.param({"retention_batch_size": "0"}, URLS, "--retention-batch-size='0'", id="batch-zero"),
        pytest.param({"http": "h2"}, URLS, "--http='h2' is invalid: must be httptools or h11", id="http"),
        pytest.param(
            {},
            {**URLS, "DATASTORAGE_EVENT_LOOP": "trio"},
            "DATASTORAGE_EVENT_LOOP='trio' is invalid: must be uvloop or asyncio",
            id="event-loop",
        ),
        pytest.param(
            {"group_commit_max_events": "0"}, URLS, "--group-commit-max-events='0'", id="group-of-none"
        ),
        pytest.param(
            {"rate_limit_trusted_proxies": "10.0.0.1/8"},
            URLS,
            "--rate-limit-trusted-proxies='10.0.0.1/8' is invalid: 10.0.0.1/8 has host bits set",
            id="proxy-host-bits",
        ),
    ],
)
def test_a_bad_setting_is_named_in_the_error(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        load_settings(flags, environ)


def test_rate_limiting_is_off_unless_enabled_and_reads_its_settings() -> None:
    assert not load_settings({}, URLS).rate_limit.enabled

    limits = load_settings(
        {"rate_limit_burst": "3"},
        {
            **URLS,
            "DATASTORAGE_RATE_LIMIT_ENABLED": "True",
            "DATASTORAGE_RATE_LIMIT_RPS": "0.5",
            "DATASTORAGE_RATE_LIMIT_TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1,",
        },
    ).rate_limit

    assert limits.enabled
    assert (limits.rps, limits.burst, limits.max_clients) == (0.5, 3, 10_000)
    assert limits.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    )


def test_c_implementations_and_group_commit_by_default_and_each_can_be_changed() -> None:
    default = load_settings({}, URLS)
    assert (default.http, default.event_loop, default.group_commit_max_events) == ("httptools", "uvloop", 100)

    changed = load_settings(
        {"http": "H11", "group_commit_max_events": "1"}, {**URLS, "DATASTORAGE_EVENT_LOOP": "asyncio"}
    )
    assert (changed.http, changed.event_loop, changed.group_commit_max_events) == ("h11", "asyncio", 1)


def test_retention_is_off_unless_enabled_and_keeps_7_years_by_default() -> None:
    assert load_settings({}, URLS).retention == RetentionSettings(
        enabled=False, interval=86400.0, batch_size=1000, default_days=2555
    )

    retention = load_settings(
        {"retention_batch_size": "50"},
        {**URLS, "DATASTORAGE_RETENTION_ENABLED": "true", "DATASTORAGE_RETENTION_DEFAULT_DAYS": "365"},
    ).retention

    assert retention == RetentionSettings(enabled=True, interval=86400.0, batch_size=50, default_days=365)


def test_the_hash_key_is_a_file_path_and_optional() -> None:
    assert load_settings({}, URLS).audit_hash_key_file is None
    settings = load_settings({}, {**URLS, "DATASTORAGE_AUDIT_HASH_KEY_FILE": "/etc/ds/key"})
    assert settings.audit_hash_key_file == Path("/etc/ds/key")
    with pytest.raises(ConfigError, match="--audit-hash-key-file=' ' is invalid: must be a file path"):
        load_settings({"audit_hash_key_file": " "}, URLS)


def test_passwords_are_hidden_in_messages() -> None:
    assert redact_url("postgresql://user:s3cret@db:5432/x") == "postgresql://user:***@db:5432/x"
    with pytest.raises(ConfigError) as refused:
        load_settings({}, {**URLS, "DATABASE_URL": "mysql://user:s3cret@db/x"})
    assert "s3cret" not in str(refused.value)


def test_migrating_needs_only_the_database_url() -> None:
    assert load_database_url({}, {"DATABASE_URL": URLS["DATABASE_URL"]}) == URLS["DATABASE_URL"]
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        load_database_url({}, {"REDIS_URL": URLS["REDIS_URL"]})
