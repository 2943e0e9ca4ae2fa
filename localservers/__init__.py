"""Local PostgreSQL and Redis servers from the Debian packages, for tests, benchmarks and the local run.

`install()` puts the packages on the machine when they are missing, through
the `debian_packages` package (no system services are left running). `PostgresServer`
and `RedisServer` each start a private server on a reserved loopback port
with its own directory, as context managers or with `start()`/`stop()`; given
`extra_addresses`, such as a test node's host address, they listen there too
and admit clients from there. Nothing here talks SQL or Redis commands beyond
provisioning; clients use the `url` properties, or `url_at(address)`.
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
