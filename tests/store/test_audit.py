"""The audit store against SQLite and PostgreSQL, and the accounting check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from moesif_segment_sync.errors import AccountingError, ConfigError, SyncError
from moesif_segment_sync.store.audit import (
    SCHEMA_VERSION,
    AuditStore,
    BatchEntry,
    RunKey,
    batches,
    check_accounting,
    schema_version,
    user_state,
)

KEY = RunKey("moesif_to_segment", "scheduled__2026-11-25T01:00:00+00:00")


def test_ledger_round_trips_batches_and_updates_a_retried_one(audit_url):
    store = AuditStore(audit_url)
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 400, 470_000, 1, "m-1", "m-400"))
    store.record_batch(KEY, BatchEntry(0, 2, "failed", 10, 9_000, 6, "m-401", "m-410", "503"))
    store.record_batch(KEY, BatchEntry(0, 2, "sent", 10, 9_000, 2, "m-401", "m-410"))
    store.record_batch(KEY, BatchEntry(1, 1, "sent", 5, 3_000, 1, "m-411", "m-415"))

    ledger = store.ledger(KEY)

    assert ledger == {
        (0, 1): BatchEntry(0, 1, "sent", 400, 470_000, 1, "m-1", "m-400"),
        (0, 2): BatchEntry(0, 2, "sent", 10, 9_000, 2, "m-401", "m-410"),
        (1, 1): BatchEntry(1, 1, "sent", 5, 3_000, 1, "m-411", "m-415"),
    }
    assert list(store.ledger(KEY, 1)) == [(1, 1)]
    assert store.ledger(RunKey("moesif_to_segment", "other")) == {}


def test_an_accepted_batch_replaces_the_state_of_its_users_and_keeps_the_others(audit_url):
    store = AuditStore(audit_url)
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 2, 900, 1, "m-1-a", "m-2-a"),
                       accepted=[("u1", "m-1-a"), ("u2", "m-2-a")])
    later = RunKey(KEY.dag_id, "scheduled__2026-11-25T02:00:00+00:00")

    store.record_batch(later, BatchEntry(3, 7, "sent", 2, 900, 1, "m-1-b", "m-3-a"),
                       accepted=[("u1", "m-1-b"), ("u3", "m-3-a")])

    assert store.accepted_message_ids(KEY.dag_id, ["u1", "u2", "u3", "u4"]) == {
        "u1": "m-1-b", "u2": "m-2-a", "u3": "m-3-a"}  # from the delta: not folded yet
    assert store.fold_user_state(KEY.dag_id) == 4
    assert store.fold_user_state(KEY.dag_id) == 0
    assert store.accepted_message_ids(KEY.dag_id, ["u1", "u2", "u3", "u4"]) == {
        "u1": "m-1-b", "u2": "m-2-a", "u3": "m-3-a"}
    with store.engine.connect() as db:
        rows = {row.user_id: (row.run_id, row.shard, row.batch_no, row.content_hash)
                for row in db.execute(sa.select(user_state))}
    assert rows == {"u1": (later.run_id, 3, 7, "b"), "u2": (KEY.run_id, 0, 1, "a"),
                    "u3": (later.run_id, 3, 7, "a")}
    assert store.accepted_message_ids("another_dag", ["u1"]) == {}
    store.close()


def test_a_fold_keeps_each_users_latest_acceptance_and_the_delta_overrides_the_state(
        audit_url):
    store = AuditStore(audit_url)
    later = RunKey(KEY.dag_id, "scheduled__2026-11-25T02:00:00+00:00")
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 2, 900, 1),
                       accepted=[("u2", "m-2-a"), ("u1", "m-1-a")])
    store.fold_user_state(KEY.dag_id)
    store.record_batch(KEY, BatchEntry(0, 2, "sent", 1, 900, 1), accepted=[("u1", "m-1-b")])
    store.record_batch(later, BatchEntry(0, 1, "sent", 1, 900, 1), accepted=[("u1", "m-1-c")])
    store.record_batch(RunKey("another_dag", "r"), BatchEntry(0, 1, "sent", 1, 9, 1),
                       accepted=[("u1", "m-1-x")])

    # Not folded (a load that failed before its shard's end): the delta wins over the state.
    assert store.accepted_message_ids(KEY.dag_id, ["u1", "u2"]) == {"u1": "m-1-c",
                                                                   "u2": "m-2-a"}
    assert store.fold_user_state(KEY.dag_id) == 2  # another_dag's row stays in its delta
    assert store.accepted_message_ids(KEY.dag_id, ["u1", "u2"]) == {"u1": "m-1-c",
                                                                   "u2": "m-2-a"}
    assert store.accepted_message_ids("another_dag", ["u1"]) == {"u1": "m-1-x"}
    with store.engine.connect() as db:
        assert db.execute(sa.select(user_state.c.run_id, user_state.c.batch_no).where(
            user_state.c.user_id == "u1", user_state.c.dag_id == KEY.dag_id)).one() == (
            later.run_id, 1)
    store.close()


def test_a_sqlite_store_keeps_a_write_ahead_log(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with store.engine.connect() as db:
        modes = (db.exec_driver_sql("PRAGMA journal_mode").scalar(),
                 db.exec_driver_sql("PRAGMA synchronous").scalar())
    store.close()
    assert modes == ("wal", 1)  # 1 is NORMAL: synced at checkpoints, not at every commit


def test_run_record_is_upserted(audit_url):
    store = AuditStore(audit_url)
    window = datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 25, 1, tzinfo=UTC)
    base = dict(mode="scheduled", window_start=window[0], window_end=window[1],
                window_source="data_interval", params={"dry_run": False}, dry_run=False,
                counts={}, timings={"load": 1.5})
    store.record_run(KEY, status="failed", considered=3, **base)
    store.record_run(KEY, status="success", considered=5, sent=4, rejected=1, **base)

    run = store.run(KEY)

    assert (run["status"], run["considered"], run["sent"], run["rejected"]) == ("success", 5, 4, 1)
    assert run["window_start"].replace(tzinfo=UTC) == window[0]
    assert run["timings"] == {"load": 1.5}


def test_rejects_are_replaced_not_appended_on_a_rerun(audit_url):
    store = AuditStore(audit_url)
    row = {"entity": "user", "entity_id": None, "kind": "no_user_id", "reason": "user_id is blank",
           "raw_location": "file:///s/rejects.jsonl.gz#L1", "raw_record": '{"user_id":" "}'}
    store.replace_rejects(KEY, [row, row])
    written = store.replace_rejects(KEY, [row])

    assert written == 1
    assert [(r["seq"], r["reason"]) for r in store.rejects(KEY)] == [(0, "user_id is blank")]


def test_schema_is_created_once_with_its_version(audit_url):
    AuditStore(audit_url).close()
    store = AuditStore(audit_url)
    with store.engine.connect() as db:
        assert db.execute(sa.select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]


def test_a_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    with store.engine.begin() as db:
        db.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1,
                                                  applied_at=datetime.now(UTC)))
    with pytest.raises(ConfigError, match="newer than this release"):
        AuditStore(url)


def test_an_unreachable_store_names_itself_without_the_password():
    with pytest.raises(SyncError) as caught:
        AuditStore("postgresql://sync:s3cret-pass@127.0.0.1:1/audit")
    assert "unavailable" in str(caught.value)
    assert "s3cret-pass" not in str(caught.value)


def test_accounting_adds_up_on_a_mixed_run():
    check_accounting(considered=10, sent=6, would_send=0, unchanged=3, rejected=1, dry_run=False)
    check_accounting(considered=10, sent=0, would_send=9, unchanged=0, rejected=1, dry_run=True)


def test_accounting_mismatch_fails_loudly():
    with pytest.raises(AccountingError, match=r"considered 10 != sent 5 .*\(\+1 unaccounted\)"):
        check_accounting(considered=10, sent=5, would_send=0, unchanged=3, rejected=1,
                         dry_run=False)


def test_a_dry_run_that_sent_anything_fails():
    with pytest.raises(AccountingError, match="must not count sent"):
        check_accounting(considered=2, sent=1, would_send=1, unchanged=0, rejected=0, dry_run=True)


def test_an_older_store_gains_the_history_indexes(audit_url):
    store = AuditStore(audit_url)
    with store.engine.begin() as db:
        db.execute(sa.text("DROP INDEX ix_sync_runs_started"))
        db.execute(sa.text("DROP INDEX ix_sync_runs_window"))
        db.execute(schema_version.update().values(version=2))  # as release 2 left it
    store.close()

    store = AuditStore(audit_url)
    indexes = {index["name"] for index in sa.inspect(store.engine).get_indexes("sync_runs")}
    with store.engine.connect() as db:
        versions = db.execute(sa.select(schema_version.c.version)
                              .order_by(schema_version.c.version)).scalars().all()
    assert {"ix_sync_runs_started", "ix_sync_runs_window"} <= indexes
    assert versions == [2, 3, 4] == [2, 3, SCHEMA_VERSION]


def test_a_version_3_store_gains_the_trait_mask_and_content_and_keeps_its_state(audit_url):
    store = AuditStore(audit_url)
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 2, 9, 1),
                       accepted=[("u1", "m-1-a"), ("u2", "m-2-a")])
    store.fold_user_state(KEY.dag_id)
    with store.engine.begin() as db:
        for table in ("sync_user_state", "sync_user_state_delta"):
            for column in ("traits_mask", "content"):
                db.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        db.execute(schema_version.insert().values(version=3, applied_at=datetime.now(UTC)))
        db.execute(schema_version.delete().where(schema_version.c.version == 4))
    store.close()

    store = AuditStore(audit_url)
    heads = store.accepted_heads(KEY.dag_id, ["u1", "u2", "u3"])
    store.record_batch(KEY, BatchEntry(0, 2, "sent", 1, 9, 1),
                       accepted=[("u2", "m-2-b", 5, b"kept")])
    store.fold_user_state(KEY.dag_id)
    content = store.accepted_content(KEY.dag_id, ["u1", "u2"])
    store.close()
    assert heads == {"u1": ("m-1-a", None), "u2": ("m-2-a", None)}
    assert {user: kept for user, (_, kept) in content.items()} == {"u1": None, "u2": b"kept"}


def test_accepted_at_reads_back_as_the_batch_time_after_a_fold(audit_url):
    store = AuditStore(audit_url)
    before = datetime.now(UTC)
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 1, 9, 1), accepted=[("u1", "m-1-a")])
    store.fold_user_state(KEY.dag_id)
    with store.engine.connect() as db:
        accepted_at = db.execute(sa.select(user_state.c.accepted_at)).scalar_one()
        finished_at = db.execute(sa.select(batches.c.finished_at)).scalar_one()
        stored = {db.execute(sa.select(sa.cast(column, sa.Text))).scalar_one()
                  for column in (user_state.c.accepted_at, batches.c.finished_at)}
    store.close()
    assert accepted_at == finished_at
    assert len(stored) == 1  # the same text in both tables: written the same way
    assert accepted_at.replace(tzinfo=UTC) >= before.replace(microsecond=0) - timedelta(seconds=1)


def test_kept_content_past_its_retention_is_forgotten_once_a_day(audit_url):
    """A purge reads every row of the DAG's state, so the audit's purge after each run does
    its work once a day: content is forgotten at most a day after its retention passed."""
    store = AuditStore(audit_url)
    other = RunKey("another_dag", KEY.run_id)
    store.record_batch(KEY, BatchEntry(0, 1, "sent", 2, 9, 1), accepted=[
        ("u1", "m-1-a", None, b"kept-1"), ("u2", "m-2-a", None, b"kept-2")])
    store.fold_user_state(KEY.dag_id)
    store.record_batch(KEY, BatchEntry(0, 2, "sent", 1, 9, 1),
                       accepted=[("u3", "m-3-a", None, b"kept-3")])  # left in the delta
    store.record_batch(other, BatchEntry(0, 1, "sent", 1, 9, 1),
                       accepted=[("u1", "m-1-x", None, b"other")])
    start = datetime.now(UTC)
    past_everything = start + timedelta(hours=1)

    def kept(dag_id: str) -> dict:
        found = store.accepted_content(dag_id, ["u1", "u2", "u3"])
        return {user: content for user, (_, content) in found.items()}

    assert store.purge_content(KEY.dag_id, start - timedelta(days=30), at=start) == 0
    assert store.purge_content(KEY.dag_id, past_everything,
                               at=start + timedelta(hours=23)) == 0  # the day's purge is done
    assert kept(KEY.dag_id) == {"u1": b"kept-1", "u2": b"kept-2", "u3": b"kept-3"}

    assert store.purge_content(KEY.dag_id, past_everything, at=start + timedelta(hours=24)) == 3

    assert kept(KEY.dag_id) == {"u1": None, "u2": None, "u3": None}
    assert kept(other.dag_id) == {"u1": b"other"}  # another DAG's purge is its own
    assert store.purge_content(other.dag_id, past_everything, at=start) == 1
    store.close()
