"""The local set-up shared by the demo, `make airflow` and the end-to-end tests:
stand-ins serving generated data, and the environment that points Airflow at them."""

from __future__ import annotations

import json
import os
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
MOESIF_KEY = "demo-moesif-management-key"
WRITE_KEY = "demo-segment-write-key"
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


def connection_env(moesif_url: str, segment_url: str, *, moesif_key: str = MOESIF_KEY,
                   write_key: str = WRITE_KEY) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables in Airflow's JSON form."""
    return {
        "AIRFLOW_CONN_MOESIF_DEFAULT": json.dumps(
            {"conn_type": "http", "host": moesif_url, "password": moesif_key}),
        "AIRFLOW_CONN_SEGMENT_DEFAULT": json.dumps(
            {"conn_type": "http", "host": segment_url, "password": write_key}),
    }


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
