"""A private PostgreSQL server for tests, benchmarks and the local run.

Each `PostgresServer` owns one cluster in its own directory, listens on a
loopback port of its own (and on the caller's extra addresses, with the same
port) and a unix socket in that directory, and is never a system service.
Who may connect is written to the cluster's `pg_hba.conf` at every start:
the superuser through the socket without a password, and the role with its
password from loopback and from the extra addresses' client networks. The
PostgreSQL binaries refuse to run as root, so under root the cluster belongs
to the `postgres` account and the server runs as it.
Settings favour speed over durability (fsync off): this is for throw-away
data. Stopping keeps the cluster when asked to, so that a test can take the
database away and bring it back on the same port with the same data. As
root, directories inside the system temp dir on the way to the cluster get
search permission for others (o+x), so the `postgres` account can reach it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from localservers._process import LocalServerError, is_root, run_checked
from localservers._server import LOOPBACK, PrivateServer

POSTGRES_ROOT: Final = Path("/usr/lib/postgresql")
_SUPERUSER: Final = "postgres"
_SERVICE_ACCOUNT: Final = "postgres"

# Tuned for tests on a small shared machine: no durability work, small memory.
_FAST_SETTINGS: Final = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    # The test suite's shared server takes every worker's DataStorage pools (up to 10 each, two per worker).
    "max_connections": "200",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_timezone": "UTC",
    "timezone": "UTC",
}


def postgres_bin_dir() -> Path | None:
    """The bin directory of the newest installed PostgreSQL server, or None if no server is installed."""
    if not POSTGRES_ROOT.is_dir():
        return None
    candidates = [p / "bin" for p in POSTGRES_ROOT.iterdir() if (p / "bin" / "postgres").is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda bin_dir: _version_key(bin_dir.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class PostgresServer(PrivateServer):
    """One private PostgreSQL cluster with a database and a password-protected role for clients.

    The role may create more databases (CREATEDB), so that tests sharing the
    server each take fresh ones.

    `base_dir` holds the cluster (`pgdata/`), the unix socket (`run/`) and the
    server log; `PrivateServer` says how long it and the port are kept.
    """

    _TEMP_PREFIX = "localpg-"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        database: str = "datastorage",
        user: str = "datastorage",
        extra_addresses: Sequence[str] = (),
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise LocalServerError(
                f"no PostgreSQL server under {POSTGRES_ROOT}; run `python -m localservers install`"
            )
        self._bin_dir = bin_dir
        super().__init__(
            base_dir, extra_addresses=extra_addresses, start_timeout=start_timeout, stop_timeout=stop_timeout
        )
        self._database = database
        self._user = user
        self._run_as = _service_account() if is_root() else None

    # --- where and how to reach it -------------------------------------------

    @property
    def database(self) -> str:
        return self._database

    @property
    def user(self) -> str:
        return self._user

    @property
    def password(self) -> str:
        return self._password_path.read_text().strip()

    def url_at(self, address: str) -> str:
        """`postgresql://user:password@address:port/database`, for asyncpg or psql; `url` is at 127.0.0.1."""
        return self.url_for(self._database, address=address)

    def url_for(self, database: str, *, address: str = LOOPBACK) -> str:
        """The URL of another database on this server, at `address` (loopback unless said)."""
        host = self._url_host(address)
        return f"postgresql://{self._user}:{self.password}@{host}:{self._port}/{database}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def _password_path(self) -> Path:
        return self.base_dir / "password"

    @property
    def _hba_path(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    # --- life cycle -----------------------------------------------------------

    def _start_server(self) -> None:
        """Initialises the cluster on first use, starts the server and waits until clients can connect."""
        first_start = not (self.data_dir / "PG_VERSION").exists()
        if first_start:
            self._init_cluster()
        self._write_client_authentication()
        self._launch()
        if first_start:
            self._provision_database()

    # --- steps ----------------------------------------------------------------

    def _init_cluster(self) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._password_path.write_text(secrets.token_urlsafe(18))
        self._password_path.chmod(0o600)
        if self._run_as is not None:
            uid, gid = self._run_as
            # The server account must reach the directory but need not read it.
            if self._owns_base_dir:
                self.base_dir.chmod(0o711)
            os.chown(self.data_dir, uid, gid)
            os.chown(self.socket_dir, uid, gid)
            self._check_reachable_by_service_account()
        run_checked(
            [
                str(self._bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                _SUPERUSER,
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            what="initdb",
            run_as=self._run_as,
        )

    def _check_reachable_by_service_account(self) -> None:
        _open_traversal_under_tempdir(self.data_dir.parent)
        probe = subprocess.run(
            ["test", "-x", str(self.data_dir)],
            user=self._run_as[0] if self._run_as else None,
            group=self._run_as[1] if self._run_as else None,
            extra_groups=[],
            check=False,
        )
        if probe.returncode != 0:
            raise LocalServerError(
                f"the {_SERVICE_ACCOUNT} account cannot reach {self.data_dir}: a parent directory is not "
                f"searchable by others; use a base_dir under {tempfile.gettempdir()} or grant o+x"
            )

    def _write_client_authentication(self) -> None:
        """Rewrites pg_hba.conf, so that a restart with other extra addresses admits their networks only."""
        rules = [
            "# Written by localservers at every start of the server.",
            "local all all trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            *(f"host all all {network} scram-sha-256" for network in self.client_networks),
        ]
        self._hba_path.write_text("\n".join(rules) + "\n")
        self._hba_path.chmod(0o600)
        if self._run_as is not None:
            os.chown(self._hba_path, *self._run_as)

    def _launch(self) -> None:
        settings = {
            **_FAST_SETTINGS,
            "listen_addresses": ",".join(self.listen_addresses),
            "port": str(self._port),
            "unix_socket_directories": str(self.socket_dir),
        }
        argv = [str(self._bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self._start_child(
            "PostgreSQL",
            argv,
            log_path=self.log_path,
            is_ready=self._accepts_connections,
            stop_signal=signal.SIGINT,  # "fast" shutdown: disconnect clients, then exit
            run_as=self._run_as,
        )

    def _accepts_connections(self) -> bool:
        # The postmaster writes "ready" as the status line of postmaster.pid once it
        # accepts connections: reading it costs nothing, unlike a pg_isready per poll.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _provision_database(self) -> None:
        password = self.password.replace("'", "''")
        # CREATEDB: tests sharing one server take fresh databases of their own through this role.
        self._psql(
            f"CREATE ROLE \"{self._user}\" LOGIN CREATEDB PASSWORD '{password}'", what="creating the role"
        )
        # A test's database is dropped WITH (FORCE), which ends the sessions still in it; an autovacuum
        # worker that happens to be vacuuming it belongs to no role, and only pg_signal_backend may end
        # it. Without this the drop fails, now and then, with "must be a member of the role whose
        # process is being terminated or member of pg_signal_backend".
        self._psql(f'GRANT pg_signal_backend TO "{self._user}"', what="letting the role end sessions")
        self._psql(f'CREATE DATABASE "{self._database}" OWNER "{self._user}"', what="creating the database")

    def _psql(self, statement: str, *, what: str) -> None:
        run_checked(
            [
                str(self._bin_dir / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--host",
                str(self.socket_dir),
                "--port",
                str(self._port),
                "--username",
                _SUPERUSER,
                "--dbname",
                "postgres",
                "--set",
                "ON_ERROR_STOP=1",
                "--command",
                statement,
            ],
            what=what,
        )


def _open_traversal_under_tempdir(directory: Path) -> None:
    """Adds search-only permission (o+x) to private directories between the temp dir and `directory`.

    mkdtemp and pytest make 0700 directories, which the server account could
    not pass through. Only directories inside the system temp dir are touched,
    and only to let others pass through them, not to list them.
    """
    temp_root = Path(tempfile.gettempdir()).resolve()
    resolved = directory.resolve()
    if temp_root not in resolved.parents:
        return
    for ancestor in [resolved, *resolved.parents]:
        if ancestor == temp_root:
            break
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _service_account() -> tuple[int, int]:
    try:
        account = pwd.getpwnam(_SERVICE_ACCOUNT)
    except KeyError as error:
        raise LocalServerError(
            f"running as root needs the '{_SERVICE_ACCOUNT}' account, which the postgresql package creates; "
            "run `python -m localservers install`"
        ) from error
    return account.pw_uid, account.pw_gid
