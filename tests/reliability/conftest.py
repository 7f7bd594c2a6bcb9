"""Reliability tests: faults at both stand-ins, bad input, secrets, and the soak run.

The ``soak`` marker is registered here, and soak tests are left out of every
run that does not ask for them with ``-m soak`` (``make soak``).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from moesif_segment_sync.store import audit
from tests.reliability.support import FakeTime, on_fake_time

# Hypothesis keeps caches in ./.hypothesis; keep them out of the repository.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="mss-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)


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
def fake_time():
    """The stages' HTTP clients wait on a fake clock: every wait is recorded, none is slept."""
    with on_fake_time(FakeTime()) as clock:
        yield clock


@pytest.fixture
def short_sqlite_busy_timeout(monkeypatch):
    """SQLite waits 0.3 s for a lock instead of the product's fixed 30 s.

    The product has no setting for it (audit.py, ``_engine_options``); until it
    does, the tests shorten it here.
    """
    options = audit._engine_options

    def shortened(url: str, lock_timeout: float) -> dict:
        return options(url, min(lock_timeout, 0.3))

    monkeypatch.setattr(audit, "_engine_options", shortened)
