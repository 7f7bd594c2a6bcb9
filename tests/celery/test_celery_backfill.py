"""A 2-day backfill on the production topology, without Docker (`make e2e-celery`).

The docker-compose.yaml topology from this virtualenv (``tests.celery.cluster``): Airflow on
CeleryExecutor with its metadata and Celery's results in PostgreSQL, Redis as the broker, the
api-server, scheduler and dag-processor, and two Celery workers that share a file:// staging
root, as the compose workers share a volume. Daily windows over two days, shards of 50
messages and a segment_api pool of 2 slots, so the loads of each run spread over both
workers. Checked: every backfill run succeeded; load shards ran on both workers (the hostname
each task instance reports); Segment received exactly the expected users; the audit is in
its own PostgreSQL database.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.celery.cluster import DAG_ID, WORKERS, celery_cluster

FROM, TO = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
SCHEDULE = "0 0 * * *"  # daily: two windows, each with several shards
RUNS = 2
SHARD_SIZE, LOAD_SLOTS = 50, 2
BACKFILL_SECONDS = 240


@pytest.fixture
def world(tmp_path):
    dataset = generate(400, seed=8, start=FROM, end=TO)
    with MoesifStandIn(dataset.users, dataset.companies, api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment, \
            celery_cluster(tmp_path / "cluster",
                           MOESIF_SEGMENT_SCHEDULE=SCHEDULE,
                           MOESIF_SEGMENT_SHARD_SIZE=str(SHARD_SIZE),
                           MOESIF_SEGMENT_LOAD_SLOTS=str(LOAD_SLOTS),
                           MOESIF_SEGMENT_STAGING_ROOT=(tmp_path / "staging").as_uri(),
                           **connection_env(moesif.url, segment.url, moesif_key="mk",
                                            write_key="wk")) as cluster:
        yield dataset, segment, cluster


def backfill_runs(cluster) -> list[dict]:  # noqa: ANN001
    runs = cluster.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100})
    return [run for run in runs["dag_runs"] if run["run_type"] == "backfill"]


@pytest.mark.timeout(420)  # startup ~40 s, backfill ~70 s, teardown ~15 s here
def test_a_two_day_backfill_spreads_the_loads_over_two_celery_workers(world):
    dataset, segment, cluster = world
    # The scheduler examines no run of a paused DAG, backfills included.
    cluster.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    backfill = cluster.api("POST", "/api/v2/backfills", json={
        # Both dates are logical dates (window starts), both included.
        "dag_id": DAG_ID, "from_date": FROM.isoformat(),
        "to_date": (TO - timedelta(days=1)).isoformat(),
        "max_active_runs": 1, "reprocess_behavior": "none"})

    started = time.monotonic()
    while True:
        runs = backfill_runs(cluster)
        if len(runs) >= RUNS and all(run["state"] in ("success", "failed") for run in runs):
            break
        if time.monotonic() - started > BACKFILL_SECONDS:
            pytest.fail(f"backfill {backfill['id']} not done after {BACKFILL_SECONDS} s: "
                        f"{[(r['dag_run_id'], r['state']) for r in runs]}\n{cluster.tail()}")
        time.sleep(2)
    print(f"backfill of {len(runs)} runs done in {time.monotonic() - started:.0f} s")

    assert [run["state"] for run in runs] == ["success"] * RUNS, cluster.tail()
    windows = sorted((run["data_interval_start"], run["data_interval_end"]) for run in runs)
    assert windows == [("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
                       ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z")]

    # Where each task instance ran: the hostname its worker reported.
    hosts: dict[str, set[str]] = defaultdict(set)
    loads_per_run = {}
    for run in runs:
        instances = cluster.api(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances",
            params={"limit": 100})["task_instances"]
        assert {ti["state"] for ti in instances} == {"success"}, instances
        for ti in instances:
            hosts[ti["task_id"]].add(ti["hostname"])
        loads_per_run[run["dag_run_id"]] = sum(ti["task_id"] == "load" for ti in instances)
    print(f"hosts by task: {dict(hosts)}; load shards per run: {loads_per_run}")
    assert all(count >= 3 for count in loads_per_run.values()), loads_per_run
    assert hosts["load"] == set(WORKERS), f"load shards ran on {hosts['load']}"
    assert set().union(*hosts.values()) == set(WORKERS)

    # Segment received exactly the good users of the span, each content once.
    expected = dataset.expected_user_ids(FROM, TO)
    assert sorted(m["userId"] for m in segment.delivered.values()) == sorted(expected)
    assert len(segment.accepted) == len(expected) and segment.duplicates == 0

    # The audit is in its own PostgreSQL database, one success record per backfill run.
    store = AuditStore(cluster.audit_url)
    try:
        records = {r["run_id"]: r for r in store.latest_runs(DAG_ID, limit=100)
                   if r["mode"] == "backfill"}
    finally:
        store.close()
    assert cluster.audit_url.startswith("postgresql://")
    assert sorted(records) == sorted(run["dag_run_id"] for run in runs)
    for run in runs:
        record = records[run["dag_run_id"]]
        assert record["status"] == "success", record
        assert record["counts"]["shards"] == loads_per_run[run["dag_run_id"]]
        assert record["staging"].startswith("file://")
    assert sum(r["sent"] for r in records.values()) == len(expected)
    assert not (cluster.home / "moesif_segment_audit.db").exists()
