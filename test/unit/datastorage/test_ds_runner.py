"""What the runner hands uvicorn: the HTTP/1.1 parser the settings name."""

from __future__ import annotations

import pytest

from datastorage.app import create_app
from datastorage.config import Settings
from datastorage.runner import _uvicorn_server


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_uvicorn_parses_http_with_the_implementation_the_settings_name(http: str) -> None:
    settings = Settings(
        database_url="postgresql://u@127.0.0.1/db", redis_url="redis://127.0.0.1/0", http=http
    )
    server = _uvicorn_server(create_app(settings), settings, access_log=False)

    server.config.load()

    assert server.config.http_protocol_class.__module__ == f"uvicorn.protocols.http.{http}_impl"
