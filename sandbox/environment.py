"""The local set-up shared by the demo, `make airflow` and the end-to-end tests:
stand-ins serving generated data, and the environment that points Airflow at them."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .datagen import Dataset, generate
from .moesif import MoesifStandIn
from .segment import SegmentStandIn

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))  # this virtualenv's
# The dev connections, in the form `airflow connections import` reads, with ${...} where the
# stand-ins' URLs and the audit store's go. The demo, `make airflow` and the tests load it.
CONNECTIONS_FILE = Path(__file__).with_name("connections.json")
_CONNECTIONS = json.loads(CONNECTIONS_FILE.read_text())
MOESIF_KEY = _CONNECTIONS["moesif_default"]["password"]
WRITE_KEY = _CONNECTIONS["segment_default"]["password"]
# The demo's window, and a wider span the data is spread over so that some
# users are outside it and some come in through a changed company.
DEMO_WINDOW = (datetime(2026, 11, 25, 0, tzinfo=UTC), datetime(2026, 11, 25, 1, tzinfo=UTC))
DATA_SPAN = (datetime(2026, 11, 24, 23, tzinfo=UTC), datetime(2026, 11, 25, 2, tzinfo=UTC))


def demo_dataset(n_users: int = 4000, seed: int = 7) -> Dataset:
    return generate(n_users, seed=seed, start=DATA_SPAN[0], end=DATA_SPAN[1])


@contextmanager
def stand_ins(dataset: Dataset) -> Iterator[tuple[MoesifStandIn, SegmentStandIn]]:
    """Both stand-ins on free loopback ports, stopped on exit."""
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        yield moesif, segment


def dev_connections(moesif_url: str | None = None, segment_url: str | None = None,
                    audit_url: str | None = None, *, moesif_key: str = MOESIF_KEY,
                    write_key: str = WRITE_KEY) -> dict[str, dict]:
    """``connections.json`` with the URLs filled in: only the connections whose URL is given
    (the keys, when given, replace the demo's)."""
    urls = {"moesif_default": moesif_url, "segment_default": segment_url,
            "moesif_segment_audit": audit_url}
    keys = {"moesif_default": moesif_key, "segment_default": write_key}
    filled = {}
    for conn_id, url in urls.items():
        if url is None:
            continue
        text = string.Template(json.dumps(_CONNECTIONS[conn_id])).substitute(
            moesif_url=url, segment_url=url, audit_url=url)
        filled[conn_id] = json.loads(text)
        if conn_id in keys:
            filled[conn_id]["password"] = keys[conn_id]
    return filled


def connection_env(moesif_url: str | None = None, segment_url: str | None = None,
                   audit_url: str | None = None, **keys: str) -> dict[str, str]:
    """``dev_connections`` as ``AIRFLOW_CONN_*`` variables in Airflow's JSON form."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(
        {name: value for name, value in fields.items() if name != "description"})
        for conn_id, fields in dev_connections(moesif_url, segment_url, audit_url,
                                               **keys).items()}


def import_connections(env: dict[str, str], connections: dict[str, dict]) -> None:
    """Put ``connections`` into Airflow's metadata database (``airflow connections import``),
    where Admin > Connections shows them and a person can edit and test them."""
    path = Path(env["AIRFLOW_HOME"]) / "dev-connections.json"
    path.write_text(json.dumps(connections, indent=2))
    path.chmod(0o600)
    airflow("connections", "import", "--overwrite", str(path), env=env)


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The process environment for Airflow commands on the embedded default."""
    return {
        **os.environ,
        # `airflow standalone` starts its components as `airflow ...` from PATH.
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "MOESIF_SEGMENT_STAGING_ROOT": (home / "staging").as_uri(),
        **extra,
    }


def prepare_airflow(env: dict[str, str]) -> None:
    """A migrated metadata database with the pool the DAG's load tasks run in, as many slots
    as ``MOESIF_SEGMENT_LOAD_SLOTS`` says (the send rate is shared among them)."""
    airflow("db", "migrate", env=env)
    slots = env.get("MOESIF_SEGMENT_LOAD_SLOTS", "1")
    airflow("pools", "set", "segment_api", slots, "Sends to Segment: shards loading at once",
            env=env)


def airflow(*args: str, env: dict[str, str], log: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``airflow`` command of this virtualenv, its output to ``log`` when given."""
    command = [AIRFLOW, *args]
    if log is None:
        return subprocess.run(command, env=env, check=check, capture_output=True, text=True)
    with log.open("w") as out:
        return subprocess.run(command, env=env, check=check, stdout=out,
                              stderr=subprocess.STDOUT, text=True)
