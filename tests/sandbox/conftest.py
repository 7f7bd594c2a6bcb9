"""Fixtures for the stand-in tests: servers on free loopback ports, sessions to talk to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn

MOESIF_KEY = "test-moesif-key"
WRITE_KEY = "test-write-key"


@pytest.fixture
def start_moesif() -> Iterator[Callable[..., MoesifStandIn]]:
    """Start a Moesif stand-in with the given users and companies; stopped after the test."""
    started: list[MoesifStandIn] = []

    def start(users: list[Any] = (), companies: list[Any] = (), **options: Any) -> MoesifStandIn:
        server = MoesifStandIn(users, companies, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def segment() -> Iterator[SegmentStandIn]:
    with SegmentStandIn(WRITE_KEY) as server:
        yield server


@pytest.fixture
def moesif_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {MOESIF_KEY}"
        yield session


@pytest.fixture
def segment_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = (WRITE_KEY, "")
        yield session


@pytest.fixture
def search(moesif_session: requests.Session) -> Callable[..., dict[str, Any]]:
    """Run one search that must succeed and return its parsed answer."""

    def run(server: MoesifStandIn, body: dict[str, Any], entity: str = "users") -> dict[str, Any]:
        response = moesif_session.post(f"{server.url}/v1/search/~/search/{entity}", json=body,
                                       timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    return run
