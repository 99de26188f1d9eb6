"""A real, throwaway PostgreSQL server for the tests (a pytest plugin, loaded from conftest.py).

`postgres_server` (session): a cluster of its own in a temporary directory under /tmp, listening on 127.0.0.1 on a
free port, stopped and removed at the end of the session. TCP connections need a scram-sha-256 password (role
`harness`, which may create databases); unix-socket connections are trusted (the superuser, used for set-up only).
When the tests run as root the server runs as the `postgres` system user, since PostgreSQL refuses to run as root.

`postgres_url` (function): a fresh database owned by `harness` for each test, as a plain `postgresql://` URL.

Without PostgreSQL server binaries the fixtures skip, unless HARNESS_REQUIRE_POSTGRES=1 (CI sets it), when they fail.
HARNESS_POSTGRES_BIN_GLOB replaces the search for them (default: /usr/lib/postgresql/*/bin, then PATH): a glob of
directories holding initdb, pg_ctl and psql; the newest version wins.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

BIN_GLOB_ENV = "HARNESS_POSTGRES_BIN_GLOB"
REQUIRE_ENV = "HARNESS_REQUIRE_POSTGRES"
DEFAULT_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SKIP_REASON = "PostgreSQL server not installed (apt-get install postgresql); CI always runs these"
SERVER_USER = "postgres"  # the system user the server runs as when the tests run as root
SUPERUSER = "postgres"  # the cluster's superuser, reachable over the unix socket only
USER = "harness"
PASSWORD = "harness-secret-pw"
HOST = "127.0.0.1"
TOOLS = ("initdb", "pg_ctl", "psql")

PG_HBA = """\
# written by tests/postgres_server.py: the socket is trusted, TCP needs a password
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL server (the postgres_server fixture)")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    superuser: str
    socket_dir: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def admin_connect(self, database: str = "postgres") -> psycopg.Connection:
        """The superuser over the unix socket, in autocommit mode (CREATE/DROP DATABASE)."""
        return psycopg.connect(host=self.socket_dir, port=self.port, user=self.superuser, dbname=database,
                               autocommit=True)


def _version_key(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", path)]


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and psql: the newest match of the glob, else (default only) PATH."""
    pattern = os.environ.get(BIN_GLOB_ENV) or DEFAULT_BIN_GLOB
    candidates = [d for d in glob.glob(pattern) if all(os.access(Path(d, t), os.X_OK) for t in TOOLS)]
    if candidates:
        return Path(max(candidates, key=_version_key))
    if os.environ.get(BIN_GLOB_ENV):  # an explicit glob replaces the whole search
        return None
    initdb = shutil.which("initdb")
    if initdb is not None:
        real = Path(initdb).resolve().parent  # Debian's /usr/local/bin links point into the versioned directory
        if all(os.access(real / t, os.X_OK) for t in TOOLS):
            return real
    return None


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, but {REQUIRE_ENV}=1 requires a real PostgreSQL server for these tests", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _log_tail(log: Path, lines: int = 30, start: int = 0) -> str:
    """The last lines of the server log, from byte `start` on (pg_ctl -l appends, attempt after attempt)."""
    try:
        with log.open("rb") as f:
            f.seek(start)
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no server log: {e})"


class _Cluster:
    """initdb/pg_ctl, run as the `postgres` system user when we are root, as ourselves otherwise."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.server_user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                pytest.fail(f"running as root, PostgreSQL must run as the {SERVER_USER!r} system user, which does not "
                            "exist (the Debian package `postgresql` creates it)", pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp"))
        if self.as_root:
            os.chown(self.root, self.server_user.pw_uid, self.server_user.pw_gid)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        # no PG* variables of the caller's (PGDATA, PGPORT, PGHOST...) leak into the tools
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}

    def run(self, tool: str, *args: str, as_server: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs = {}
        if as_server and self.as_root:
            kwargs = dict(user=self.server_user.pw_uid, group=self.server_user.pw_gid, extra_groups=[])
        return subprocess.run([str(self.bin_dir / tool), *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout, **kwargs)

    def check(self, what: str, proc: subprocess.CompletedProcess, log: bool = False):
        if proc.returncode != 0:
            msg = f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            if log:
                msg += f"\n--- tail of the server log {self.log} ---\n{_log_tail(self.log)}"
            pytest.fail(msg, pytrace=False)

    def init(self):
        self.check("initdb", self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "--no-sync",
                                      "-E", "UTF8", "--locale=C"))
        (self.data / "pg_hba.conf").write_text(PG_HBA)  # written as root: keep it the server's
        if self.as_root:
            os.chown(self.data / "pg_hba.conf", self.server_user.pw_uid, self.server_user.pw_gid)
        self.socket_dir.mkdir()
        if self.as_root:
            os.chown(self.socket_dir, self.server_user.pw_uid, self.server_user.pw_gid)

    def start(self, attempts: int = 3) -> int:
        """Start on a free port; another process may take the port between the probe and the start, so retry."""
        for attempt in range(attempts):
            port = _free_port()
            opts = (f"-p {port} -k {self.socket_dir} -c listen_addresses={HOST} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c password_encryption=scram-sha-256")
            log_start = _log_size(self.log)
            proc = self.run("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "60", "-l", str(self.log),
                            "start", timeout=90)
            if proc.returncode == 0:
                return port
            tail = _log_tail(self.log, start=log_start)
            in_use = "could not bind" in tail or "already in use" in tail
            self.stop()
            if not in_use or attempt == attempts - 1:
                self.check(f"pg_ctl start (port {port})", proc, log=True)
        raise AssertionError("unreachable")

    def psql(self, port: int, command: str):
        proc = self.run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(port),
                        "-U", SUPERUSER, "-d", "postgres", "-c", command, as_server=False)
        self.check(f"psql -c {command!r}", proc, log=True)

    def stop(self):
        if not (self.data / "postmaster.pid").exists():
            return
        proc = self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", timeout=45)
        if proc.returncode != 0:
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=45)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        searched = os.environ.get(BIN_GLOB_ENV) or f"{DEFAULT_BIN_GLOB} and PATH"
        _unavailable(f"{SKIP_REASON} [searched {searched} for {', '.join(TOOLS)}]")
    cluster = _Cluster(bin_dir)
    try:
        cluster.init()
        port = cluster.start()
        cluster.psql(port, f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        yield PostgresServer(host=HOST, port=port, user=USER, password=PASSWORD, superuser=SUPERUSER,
                             socket_dir=str(cluster.socket_dir))
    finally:
        cluster.stop()
        cluster.remove()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database owned by `harness`, named after the test, dropped afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_database_numbers)}_{slug}"[:63]
    with postgres_server.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(USER)))
    yield postgres_server.url(name)
    try:
        with postgres_server.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.Error:
        pass  # the cluster goes away at the end of the session anyway
