"""The audit store locked or unavailable: the load fails before it sends, never after.

A lock is held by another connection to the same SQLite file, as another
task or a person with the sqlite3 shell would hold it. The product waits 30 s
for a lock and has no setting for it, so these tests shorten the wait
(``short_sqlite_busy_timeout``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.errors import SegmentError, SyncError
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.store.audit import AuditStore
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.reliability.support import (
    MOESIF_KEY,
    WRITE_KEY,
    extract,
    make_run,
    users_in_window,
)

pytestmark = pytest.mark.usefixtures("short_sqlite_busy_timeout", "fake_time")


@pytest.fixture
def built(tmp_path):
    """A run with 60 messages staged (3 batches) and its audit store created."""
    run = make_run(tmp_path, max_batch_messages=20)
    with MoesifStandIn(users_in_window(60), [], api_key=MOESIF_KEY).start() as moesif:
        extract(run, moesif.url)
    AuditStore(run.audit_url).close()
    [shard] = sync.transform(run)
    return run, shard


@pytest.fixture
def segment():
    with SegmentStandIn(WRITE_KEY).start() as server:
        yield server


@contextmanager
def locked(database: Path, mode: str) -> Iterator[None]:
    """``BEGIN EXCLUSIVE`` (no one reads or writes) or ``BEGIN IMMEDIATE`` (no one else writes)
    on ``database``, from a connection of its own, until the block ends."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute(f"BEGIN {mode}")
    if mode == "IMMEDIATE":
        holder.execute("DELETE FROM sync_schema_version WHERE version < 0")  # take the lock now
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def database(run) -> Path:  # noqa: ANN001
    return Path(run.audit_url.removeprefix("sqlite:///"))


def test_an_exclusively_locked_store_fails_the_load_before_sending(built, segment):
    run, summary = built

    with locked(database(run), "EXCLUSIVE"), pytest.raises(SyncError) as caught:
        sync.load(run, Endpoint(segment.url, WRITE_KEY), summary)

    assert str(caught.value) == f"audit store {run.audit_url} is unavailable: database is locked"
    assert segment.requests == []


def test_a_store_locked_for_writing_fails_the_load_before_sending(built, segment):
    run, summary = built

    with locked(database(run), "IMMEDIATE"), pytest.raises(SyncError) as caught:
        sync.load(run, Endpoint(segment.url, WRITE_KEY), summary)

    assert "database is locked" in str(caught.value)
    assert segment.requests == []


def test_a_store_locked_for_writing_fails_a_resumed_load_before_sending(built, segment):
    run, summary = built
    segment.inject(400, after=1)
    with pytest.raises(SegmentError):
        sync.load(run, Endpoint(segment.url, WRITE_KEY), summary)  # batch 1 sent, 2 refused
    sent_before = len(segment.requests)

    with locked(database(run), "IMMEDIATE"), pytest.raises(SyncError) as caught:
        sync.load(run, Endpoint(segment.url, WRITE_KEY), summary)

    assert "database is locked" in str(caught.value)
    assert len(segment.requests) == sent_before


def test_a_store_that_cannot_be_opened_fails_the_load_before_sending(built, segment, tmp_path):
    run, summary = built
    (tmp_path / "a-file").write_text("not a folder")
    unusable = f"sqlite:///{tmp_path / 'a-file' / 'audit.db'}"

    with pytest.raises(SyncError) as caught:
        sync.load(sync.Run(**{**run.__dict__, "audit_url": unusable}),
                  Endpoint(segment.url, WRITE_KEY), summary)

    assert str(caught.value) == f"audit store {unusable} is unavailable: " \
                                "unable to open database file"
    assert segment.requests == []
