"""The history benchmark's seeding, small: what it writes is what the history reads."""

from __future__ import annotations

from bench.history_load import percentile, seed
from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore, RunKey
from tests.support import DAG_ID


def test_the_seeded_store_holds_the_runs_and_the_newest_runs_rejects(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    newest, _ = seed(url, 120, 45)
    store = AuditStore(url)
    listing = history.list_runs(store, DAG_ID, limit=3)
    assert (listing.total, listing.runs[0].run_id, listing.runs[0].rejected) == (120, newest, 45)
    assert newest == "manual__2026-11-25T00:00:00+00:00"
    assert history.list_rejects(store, RunKey(DAG_ID, newest)).total == 45
    assert history.list_runs(store, DAG_ID, status="failed").total == 3  # runs 7, 57 and 107


def test_percentiles_are_nearest_rank():
    values = [float(n) for n in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (10.0, 19.0)
