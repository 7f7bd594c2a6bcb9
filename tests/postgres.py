"""A throwaway PostgreSQL server from the machine's own binaries, for the audit-store tests.

Set ``MOESIF_SEGMENT_TEST_PG_URL`` to use an existing server instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh server on a free loopback port; stop it afterwards."""
    if os.environ.get("MOESIF_SEGMENT_TEST_PG_URL"):
        yield os.environ["MOESIF_SEGMENT_TEST_PG_URL"]
        return
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        raise RuntimeError("PostgreSQL's initdb and pg_ctl must be on PATH "
                           "(or set MOESIF_SEGMENT_TEST_PG_URL)")
    root = Path(tempfile.mkdtemp(prefix="mss-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres_user(["initdb", "-D", str(data), "-U", "postgres",
                                      "--auth=trust", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_postgres_user(["pg_ctl", "-D", str(data), "-o", options, "-w",
                                      "-l", str(root / "log"), "start"]),
                   check=True, capture_output=True)
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
        subprocess.run(_as_postgres_user(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
