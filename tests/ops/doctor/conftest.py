"""The stand-ins for the doctor's tests, and the Airflow connections pointing at them.

The doctor reads ``moesif_default`` and ``segment_default`` exactly as the DAG
does, so the tests give them as ``AIRFLOW_CONN_*`` variables
(``sandbox.environment.connection_env``) rather than through any override.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from sandbox.environment import connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.ops.doctor.support import COMPANIES, MOESIF_KEY, USERS, WRITE_KEY, Doctor


@pytest.fixture
def start_doctor(monkeypatch) -> Iterator[Callable[..., Doctor]]:
    """``start_doctor(users=..., companies=..., api_key=..., max_page_size=..., write_key=...)``:
    both stand-ins started, and the connections set to them with the doctor's keys."""
    started: list = []

    def start(users: list = USERS, companies: list = COMPANIES, *, api_key: str = MOESIF_KEY,
              max_page_size: int | None = None, write_key: str = WRITE_KEY) -> Doctor:
        moesif = MoesifStandIn(users, companies, api_key=api_key,
                               max_page_size=max_page_size).start()
        segment = SegmentStandIn(write_key).start()
        started.extend([moesif, segment])
        for name, value in connection_env(moesif.url, segment.url, moesif_key=MOESIF_KEY,
                                          write_key=WRITE_KEY).items():
            monkeypatch.setenv(name, value)
        for name in [name for name in os.environ if name.startswith("MOESIF_SEGMENT_")]:
            monkeypatch.delenv(name)
        return Doctor(moesif, segment)

    yield start
    for server in started:
        server.stop()
