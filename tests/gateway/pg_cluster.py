"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a temp directory, Unix socket only.

The server binaries come from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<major>/bin``); ``make test`` installs it. Without them
the fixture FAILS (never skips): a test run that silently drops the PostgreSQL
engine would prove nothing about it.

initdb refuses to run as root, so under root the cluster runs as the
``postgres`` system user (created by the Debian package), else as a system
user ``sanaqtest`` made on the spot. The server listens on no TCP port at all
(``listen_addresses = ''``), only on a socket in its own temp directory, with
``fsync`` and ``synchronous_commit`` on like production.

``pg_cluster`` is session-scoped and kept in ``config.stash``, so every test
module that imports the fixture shares one cluster per run; it is stopped
(``pg_ctl stop -m immediate``) and deleted when the run ends. Tests give
themselves a fresh database with ``create_database`` / ``drop_database``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

__all__ = ["Cluster", "create_database", "drop_database", "pg_cluster", "start_cluster", "stop_cluster"]

SUPERUSER = "postgres"


@dataclass(frozen=True)
class Cluster:
    root: Path
    bin_dir: Path
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, **params: str) -> str:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"host": str(self.socket_dir), **params}.items())
        return f"postgresql://{quote(user, safe='')}@/{dbname}?{query}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=60, check=False)


def find_bin_dir() -> Path | None:
    """The newest installed server version's bin directory holding initdb and pg_ctl."""

    def major(p: Path) -> int:
        m = re.match(r"\d+", p.parent.name)
        return int(m.group()) if m else 0

    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()]
    if found:
        return max(found, key=major)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "sanaqtest"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "sanaqtest"],
        check=True,
        capture_output=True,
    )
    return "sanaqtest"


def start_cluster() -> Cluster:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH; "
            "install the Debian package `postgresql` (`make test` does) to run the PostgreSQL store tests",
            pytrace=False,
        )
    run_as = _server_user()
    root = Path(tempfile.mkdtemp(prefix="sanaq-pg-"))  # short: a socket path must stay under 108 bytes
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(root, bin_dir, run_as)
    done = cluster.run(
        "initdb", "-D", str(cluster.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "-N"
    )
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({done.returncode}): {done.stderr.strip()}", pytrace=False)
    with (cluster.data_dir / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# sanaq test cluster\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{cluster.socket_dir}'\n"
            "fsync = on\n"
            "synchronous_commit = on\n"
            "max_connections = 200\n"
            "shared_buffers = 32MB\n"
        )
    done = cluster.run("pg_ctl", "-D", str(cluster.data_dir), "-l", str(root / "server.log"), "-w", "-t", "60", "start")
    if done.returncode != 0:
        log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
        stop_cluster(cluster)
        pytest.fail(f"pg_ctl start failed: {done.stderr.strip()}\n{log}", pytrace=False)
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    cluster.run("pg_ctl", "-D", str(cluster.data_dir), "-m", "immediate", "-w", "stop")
    shutil.rmtree(cluster.root, ignore_errors=True)


_CLUSTER_KEY = pytest.StashKey[Cluster]()


@pytest.fixture(scope="session")
def pg_cluster(request: pytest.FixtureRequest) -> Cluster:
    stash = request.config.stash
    if _CLUSTER_KEY not in stash:
        cluster = start_cluster()
        stash[_CLUSTER_KEY] = cluster
        request.config.add_cleanup(partial(stop_cluster, cluster))
    return stash[_CLUSTER_KEY]


async def create_database(cluster: Cluster) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
    return name


async def drop_database(cluster: Cluster, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
