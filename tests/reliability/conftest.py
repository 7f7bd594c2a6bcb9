"""Reliability tests: faults at both stand-ins, bad input, secrets, and the soak run.

The ``soak`` marker is registered here, and soak tests are left out of every
run that does not ask for them with ``-m soak`` (``make soak``).
"""

from __future__ import annotations

from functools import partial

import pytest

from moesif_segment_sync import audit, sync
from moesif_segment_sync.moesif import MoesifClient
from moesif_segment_sync.segment import SegmentSender
from tests.reliability.support import FakeTime


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "soak: the long fault-injection soak run; only with -m soak (make soak)")


def pytest_collection_modifyitems(config, items):
    if "soak" in (config.getoption("markexpr") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    """The stages' HTTP clients wait on a fake clock: every wait is recorded, none is slept."""
    clock = FakeTime()
    monkeypatch.setattr(sync, "MoesifClient",
                        partial(MoesifClient, sleep=clock.sleep, clock=clock.now))
    monkeypatch.setattr(sync, "SegmentSender",
                        partial(SegmentSender, sleep=clock.sleep, clock=clock.now))
    return clock


@pytest.fixture
def short_sqlite_busy_timeout(monkeypatch):
    """SQLite waits 0.3 s for a lock instead of the product's fixed 30 s.

    The product has no setting for it (audit.py, ``_engine_options``); until it
    does, the tests shorten it here.
    """
    options = audit._engine_options

    def shortened(url: str) -> dict:
        if url.startswith("sqlite"):
            return {"connect_args": {"timeout": 0.3}}
        return options(url)

    monkeypatch.setattr(audit, "_engine_options", shortened)
