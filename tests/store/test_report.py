"""The one-screen summary the audit task logs."""

from __future__ import annotations

from moesif_segment_sync.store.report import summary_table

REPORT = {
    "run_id": "scheduled__2026-11-25T01:00:00+00:00", "mode": "scheduled",
    "window_start": "2026-11-25T00:00:00.000Z", "window_end": "2026-11-25T01:00:00.000Z",
    "window_source": "data_interval", "dry_run": True, "considered": 5, "sent": 0,
    "would_send": 3, "unchanged": 1, "rejected": 1, "batches": 1, "status": "success",
    "staging": "file:///staging/run", "audit_store": "sqlite:///audit.db",
    "counts": {"warnings": {}, "rejected_by_kind": {"no_user_id": 1},
               "groups": {"built": 3, "sent": 0, "would_send": 2, "unchanged": 1, "refused": 0},
               "traits_nulled": 1,
               "diff": {"users": {"changed": 2, "new": 1},
                        "traits": {"metadata.plan changed": 2, "username removed": 1}}},
}


def test_the_summary_names_group_calls_removed_traits_and_the_diff():
    assert summary_table(REPORT).splitlines() == [
        "run               scheduled__2026-11-25T01:00:00+00:00",
        "mode              scheduled",
        "window            [2026-11-25T00:00:00.000Z, 2026-11-25T01:00:00.000Z) (data_interval)",
        "considered        5",
        "would send        3",
        "unchanged         1",
        "rejected          1",
        "batches           1",
        "warnings          none",
        "rejected by kind  no_user_id 1",
        "group calls       built 3, sent 0, would send 2, unchanged 1, refused 0",
        "removed traits    1 user(s), would be sent as null",
        "diff              changed 2, new 1; metadata.plan changed 2, username removed 1",
        "status            success",
        "staged files      file:///staging/run",
        "audit store       sqlite:///audit.db",
    ]


def test_a_plain_run_has_none_of_those_rows():
    plain = {**REPORT, "counts": {"warnings": {}, "rejected_by_kind": {}}}
    names = [line.split("  ")[0] for line in summary_table(plain).splitlines()]
    assert not {"group calls", "removed traits", "diff"} & set(names)
