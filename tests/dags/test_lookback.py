"""Late-indexed records (issue 20): Moesif indexes a user changed at the end of window A only
after A's run; the next run's lookback reads the end of A, sends that user, and says so. The
two runs together miss nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, stand_ins
from sandbox.moesif import parse_timestamp_ms
from tests.conftest import REPO
from tests.dags.support import point_dag_at
from tests.history_seed import element_text, run_page
from tests.support import DAG_ID

A_END = datetime(2026, 11, 25, 1, tzinfo=UTC)    # window A = [00:00, 01:00)
B_END = datetime(2026, 11, 25, 2, tzinfo=UTC)    # window B = [01:00, 02:00)
LOOKBACK = timedelta(minutes=10)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def latest_ms(record: dict) -> int:
    return max(parse_timestamp_ms(record.get(name)) or -1
               for name in ("modified_time", "last_seen_time"))


def late_user(dataset) -> dict:  # noqa: ANN001
    """A good user last changed in A's last ten minutes whose company did not change after:
    only A's run (or the lookback of B's) would find it."""
    recent = {c["company_id"] for c in dataset.companies if latest_ms(c) >= _ms(A_END - LOOKBACK)}
    return next(user for index, user in enumerate(dataset.users)
                if index not in dataset.expected_rejects and isinstance(user, dict)
                and isinstance(user.get("user_id"), str)
                and _ms(A_END - LOOKBACK) <= latest_ms(user) < _ms(A_END)
                and user.get("company_id") not in recent)


def test_a_late_indexed_user_arrives_with_the_next_run(airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_LOOKBACK", "PT10M")
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    late = late_user(dataset)
    indexed = [user for user in dataset.users if user is not late]
    with stand_ins(dataset) as (moesif, segment):
        moesif.collections["users"].delete(late["user_id"])  # not indexed yet
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
        first = dag.test(logical_date=A_END)
        assert late["user_id"] not in {m["userId"] for m in segment.delivered.values()}

        moesif.collections["users"].upsert(late)  # Moesif indexes it, after A's run
        dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
        second = dag.test(logical_date=B_END)
        delivered = {m["userId"] for m in segment.delivered.values()}

    assert (str(first.state), str(second.state)) == ("success", "success")
    assert indexed  # the late user was the only one held back
    # Nobody missed: every user of A (and its own lookback) and of B arrived.
    assert delivered == dataset.expected_user_ids(A_END - timedelta(hours=1) - LOOKBACK, B_END)
    store = AuditStore(audit_url)
    record = store.latest_runs(DAG_ID, limit=1)[0]
    store.close()
    assert record["counts"]["users_found_late"] == 1
    assert record["counts"]["users_in_lookback"] >= 1
    assert "the lookback found 1 user(s) that no earlier run had sent (indexed by Moesif " \
           "after their own window's run)" in record["notes"]
    page = run_page(airflow_db, tmp_path, record["run_id"])
    assert element_text(page, "lookback") == (
        f"{record['counts']['users_in_lookback']} of the users in the window were read in the "
        "lookback (the end of the previous window); 1 of them no earlier run had sent")


def test_without_a_lookback_the_late_user_is_missed(airflow_db, tmp_path, monkeypatch):
    """The control: the same late user is lost when the lookback is off."""
    monkeypatch.setenv("MOESIF_SEGMENT_LOOKBACK", "PT0S")
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    late = late_user(dataset)
    with stand_ins(dataset) as (moesif, segment):
        moesif.collections["users"].delete(late["user_id"])
        point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID].test(logical_date=A_END)
        moesif.collections["users"].upsert(late)
        DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID].test(logical_date=B_END)
        delivered = {m["userId"] for m in segment.delivered.values()}
    assert late["user_id"] not in delivered
