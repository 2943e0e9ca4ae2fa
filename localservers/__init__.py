"""Local PostgreSQL and Redis servers from the Debian packages, for tests, benchmarks and the local run.

`install()` puts the packages on the machine when they are missing (no system
services are left running). `PostgresServer` and `RedisServer` each start a
private server on a reserved loopback port with its own directory, as context
managers or with `start()`/`stop()`. Nothing here talks SQL or Redis commands
beyond provisioning; clients use the `url` properties.
"""

from localservers._process import LocalServerError
from localservers.install import install, missing_packages
from localservers.postgres import PostgresServer
from localservers.redis_server import RedisServer

__all__ = [
    "LocalServerError",
    "PostgresServer",
    "RedisServer",
    "install",
    "missing_packages",
]
