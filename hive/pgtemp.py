"""A throwaway PostgreSQL server in a temporary directory, for `hive dev` and the tests.

It uses Debian's `postgresql` binaries (``scripts/install-system-deps.sh`` installs them):
``initdb`` into the directory, then ``postgres`` on 127.0.0.1 and a free port, with a
password for the ``hive`` role so the URL it hands out is the same kind an operator
writes. PostgreSQL refuses to run as root; started by root it runs as the ``postgres``
user (the directory is given to that user).

``find_binaries()`` says where the binaries are, or None; ``missing_reason()`` says how to
install them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL's server binaries are not installed: "
    "`sudo apt-get install postgresql` (or run scripts/install-system-deps.sh)"
)


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: Debian's (newest version
    first), else wherever they are on the PATH together."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    on_path, server = shutil.which("initdb"), shutil.which("postgres")
    if on_path and server and Path(on_path).parent == Path(server).parent:
        return Path(on_path).parent
    return None


def missing_reason() -> str:
    """Why a throwaway server cannot start here ("" when it can)."""
    if find_binaries() is None:
        return INSTALL_HINT
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run PostgreSQL as"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _owner() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: the postgres user when we are root."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")
    return user.pw_uid, user.pw_gid


@dataclass
class TempPostgres:
    """One server; ``url`` is a ``postgresql://`` URL for the ``hive`` database."""

    # None: a new directory under the system's temporary one, removed by stop(). (Run as
    # root, the server runs as the postgres user, who must be able to reach the
    # directory: a test's own temporary directory is private to root.)
    directory: Path | None = None
    port: int = 0
    password: str = ""
    process: subprocess.Popen[bytes] | None = None
    # Addresses to listen on besides 127.0.0.1, and the networks whose clients may log in
    # with the password (pg_hba.conf): the fault suite's network namespaces.
    extra_listen: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    _owned: bool = False

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, host: str, database: str = "hive") -> str:
        return f"postgresql://hive:{self.password}@{host}:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> TempPostgres:
        binaries = find_binaries()
        reason = missing_reason()
        if binaries is None or reason:
            raise RuntimeError(reason or INSTALL_HINT)
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="hive-postgres-"))
            self._owned = True
        data, sockets = self.directory / "data", self.directory / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        self.password = self.password or secrets.token_hex(12)
        self.port = self.port or _free_port()
        owner = _owner()
        password_file = self.directory / "pwfile"
        password_file.write_text(self.password + "\n")
        if owner:
            for path in (self.directory, sockets, password_file):
                os.chown(path, *owner)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        uid, gid = owner if owner else (None, None)
        groups: list[int] | None = [] if owner else None
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            subprocess.run(
                [
                    str(binaries / "initdb"),
                    f"--pgdata={data}",
                    "--username=hive",
                    "--auth=scram-sha-256",
                    f"--pwfile={password_file}",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                env=env,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        if fresh and self.allow_networks:
            with (data / "pg_hba.conf").open("a") as hba:
                for network in self.allow_networks:
                    hba.write(f"host all all {network} scram-sha-256\n")
        with (self.directory / "postgres.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(binaries / "postgres"),
                    *("-D", str(data), "-p", str(self.port)),
                    *("-h", ",".join(("127.0.0.1", *self.extra_listen))),
                    *("-k", str(sockets)),
                    # A throwaway server: no fsync, few resources.
                    *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                    *("-c", "full_page_writes=off", "-c", "max_connections=200"),
                    *("-c", "shared_buffers=32MB"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        deadline = time.monotonic() + timeout
        ready = [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        while subprocess.run(ready, capture_output=True).returncode != 0:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited ({self.process.returncode}): "
                    + (self.directory / "postgres.log").read_text()[-2000:]
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections in {timeout:.0f} s")
            time.sleep(0.1)
        if not fresh:  # started again on its own data (a restart): the database is there
            return self
        subprocess.run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-Uhive", "hive"],
            check=True,
            capture_output=True,
            env={**env, "PGPASSWORD": self.password},
        )
        return self

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it lingers; remove the directory if
        this server made it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._owned and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def temp_postgres(directory: Path | None = None) -> Iterator[TempPostgres]:
    server = TempPostgres(directory).start()
    try:
        yield server
    finally:
        server.stop()
