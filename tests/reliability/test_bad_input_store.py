"""Bad ids that get past the transform must not break the audit store, SQLite or PostgreSQL.

Each run is every stage against the stand-ins; the audit store is the shared
``audit_url`` fixture, so each test runs against SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import json

from moesif_segment_sync.store.audit import AuditStore
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.reliability.support import (
    MOESIF_KEY,
    WRITE_KEY,
    make_run,
    run_stages,
    staged_messages,
)

T = "2026-11-25T00:30:00.000Z"
ORDINARY = {"user_id": "usr_ordinary", "email": "ordinary@example.com", "modified_time": T}


def run_twice(tmp_path, audit_url: str, user: dict) -> tuple[dict, dict, SegmentStandIn]:  # noqa: ANN001
    """The same window twice with ``user`` and an ordinary one; both audit reports."""
    with MoesifStandIn([ORDINARY, user], [], api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        first = run_stages(make_run(tmp_path, "manual__first", audit_url=audit_url,
                                    max_rejected_share=1.0), moesif.url, segment.url)
        second = run_stages(make_run(tmp_path, "manual__second", audit_url=audit_url,
                                     max_rejected_share=1.0), moesif.url, segment.url)
    return first["audit"], second["audit"], segment


def test_a_user_id_with_a_lone_surrogate_is_rejected_and_its_reject_stored(tmp_path,
                                                                           audit_url):
    user = {"user_id": "usr_\ud800", "modified_time": T}

    first, _, segment = run_twice(tmp_path, audit_url, user)

    assert (first["status"], first["sent"], first["rejected"]) == ("success", 1, 1)
    store = AuditStore(audit_url)
    [row] = store.rejects(make_run(tmp_path, "manual__first").key)
    store.close()
    assert row["kind"] == "unserializable"
    assert json.loads(row["raw_record"]) == user
    assert [m["userId"] for m in segment.accepted] == ["usr_ordinary"]


def test_a_user_id_with_a_nul_character_is_rejected_and_the_reject_is_stored(tmp_path,
                                                                             audit_url):
    """PostgreSQL cannot store NUL in text, and a destination may cut the id at it: such an
    id is rejected with that reason (and shown escaped in the audit store)."""
    user = {"user_id": "usr_\x00_nul", "modified_time": T}

    first, _, segment = run_twice(tmp_path, audit_url, user)

    assert (first["status"], first["sent"], first["rejected"]) == ("success", 1, 1)
    store = AuditStore(audit_url)
    [row] = store.rejects(make_run(tmp_path, "manual__first").key)
    store.close()
    assert (row["kind"], row["entity_id"]) == ("no_user_id", "usr_\\x00_nul")
    assert row["reason"].startswith("user_id contains a NUL character")
    assert [m["userId"] for m in segment.accepted] == ["usr_ordinary"]


def test_a_very_long_user_id_is_sent_once_and_then_unchanged(tmp_path, audit_url):
    user_id = "usr_" + "x" * 1000
    user = {"user_id": user_id, "modified_time": T}

    first, second, segment = run_twice(tmp_path, audit_url, user)

    assert (first["status"], first["sent"], first["rejected"]) == ("success", 2, 0)
    assert (second["status"], second["sent"], second["unchanged"]) == ("success", 0, 2)
    assert sorted(m["userId"] for m in segment.accepted) == sorted(["usr_ordinary", user_id])
    run = make_run(tmp_path, "manual__first")
    assert sorted(m["userId"] for m in staged_messages(run)) == sorted(
        ["usr_ordinary", user_id])
