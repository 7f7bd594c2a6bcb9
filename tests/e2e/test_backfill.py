"""A date-range backfill through Airflow's real scheduler (`make e2e`).

Starts `airflow standalone` (SQLite, LocalExecutor, parallelism 4) from this
virtualenv with the stand-ins and connections preset, unpauses the DAG,
creates a 3-day backfill through the REST API, waits for it, and checks the
runs, their windows, what Segment received and the audit store. Every
process it starts is stopped by process group at the end.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.airflow_server import standalone
from tests.support import DAG_ID

# A range in the past: Airflow creates no backfill run for an interval that has not ended.
FROM, TO = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)
SCHEDULE = "0 */6 * * *"  # 12 windows in 3 days: enough to cross day and window boundaries
LAST_START = TO - timedelta(hours=6)
BACKFILL_SECONDS = 600


@pytest.fixture
def world(tmp_path):
    dataset = generate(600, seed=21, start=FROM, end=TO)
    with MoesifStandIn(dataset.users, dataset.companies, api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment, \
            standalone(tmp_path / "airflow", MOESIF_SEGMENT_SCHEDULE=SCHEDULE,
                       **connection_env(moesif.url, segment.url, moesif_key="mk",
                                        write_key="wk")) as server:
        yield dataset, segment, server


# What a person who fills start/end in the Backfill dialog's Run Parameters sends along.
EXPLICIT = {"start": "2026-11-02T00:00:00Z", "end": "2026-11-02T06:00:00Z"}


@pytest.mark.timeout(BACKFILL_SECONDS + 300)
def test_a_three_day_backfill_syncs_each_window_once_whatever_its_params(world):
    dataset, segment, server = world
    server.wait(lambda: server._get(f"/api/v2/dags/{DAG_ID}").status_code == 200, 120,
                "the DAG to be parsed")
    # The backfill is created while the DAG is still paused, when the scheduler leaves its
    # runs alone, and started by unpausing it. Created while the scheduler works on the DAG,
    # its runs race the scheduler's own writes on SQLite, and the scheduler can die of a
    # StaleDataError or a failed foreign key (seen in about one run in ten).
    backfill = server.create_backfill({
        # Both dates are logical dates (interval starts), both included.
        "dag_id": DAG_ID, "from_date": FROM.isoformat(), "to_date": LAST_START.isoformat(),
        "max_active_runs": 1, "reprocess_behavior": "none", "dag_run_conf": EXPLICIT})
    server.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})

    deadline = time.monotonic() + BACKFILL_SECONDS
    while True:
        runs = [run for run in server.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns",
                                          params={"limit": 100})["dag_runs"]
                if run["run_type"] == "backfill"]
        if len(runs) >= 12 and all(run["state"] in ("success", "failed") for run in runs):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"backfill {backfill['id']} not done after {BACKFILL_SECONDS} s: "
                        f"{[(r['dag_run_id'], r['state']) for r in runs]}\n{server.tail()}")
        time.sleep(3)

    assert [run["state"] for run in runs] == ["success"] * 12, server.tail()
    intervals = sorted((run["data_interval_start"], run["data_interval_end"]) for run in runs)
    assert intervals[0][0] == "2026-11-01T00:00:00Z" and intervals[-1][1] == "2026-11-04T00:00:00Z"
    assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:], strict=False))

    store = AuditStore(f"sqlite:///{server.home / 'moesif_segment_audit.db'}")
    records = {record["run_id"]: record for record in store.latest_runs(DAG_ID, limit=100)}
    store.close()
    for run in runs:
        record = records[run["dag_run_id"]]
        assert record["mode"] == "backfill" and record["status"] == "success"
        window = (record["window_start"].replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
                  record["window_end"].replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))
        assert window == (run["data_interval_start"], run["data_interval_end"])
        assert record["window_source"] == "data_interval"
        assert record["notes"] == [
            "params start/end (2026-11-02T00:00:00+00:00 to 2026-11-02T06:00:00+00:00) ignored: "
            "a backfill run syncs its own data interval"] + (
            ["0 users changed or seen in this window"] if record["considered"] == 0 else [])
    assert len([r for r in records.values() if r["mode"] == "backfill"]) == 12

    expected = dataset.expected_user_ids(FROM, TO)
    assert sorted(m["userId"] for m in segment.delivered.values()) == sorted(expected)
    # Each user's content is the same in every window it falls in: sent once, then unchanged.
    assert len(segment.accepted) == len(expected)
    assert sum(r["unchanged"] for r in records.values() if r["mode"] == "backfill") > 0
