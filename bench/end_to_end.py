"""The whole DAG once through `airflow dags test`, as an operator would run it.

A throwaway ``AIRFLOW_HOME`` (SQLite) with the connections in
``AIRFLOW_CONN_*`` variables pointing at the running stand-ins, set up the
way the demo does it (``sandbox/environment.py``). The metadata database is
migrated first and not timed; the figure is the wall time of the
`airflow dags test` command, parsing and Airflow's own overhead included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from moesif_segment_sync.store.audit import AuditStore
from sandbox.environment import AIRFLOW, airflow_env, connection_env, prepare_airflow

from .config import DAG_ID, MOESIF_KEY, WINDOW, WRITE_KEY
from .process import BenchError, SegmentStandIn, StandIn, log_tail, run_measured


def dags_test(home: Path, log: Path, moesif: StandIn, segment: SegmentStandIn, *,
              expected_messages: int) -> dict[str, Any]:
    """Run the DAG for the benchmark's window; check it delivered every message."""
    env = airflow_env(home, **connection_env(moesif.url, segment.url, moesif_key=MOESIF_KEY,
                                             write_key=WRITE_KEY))
    started = time.perf_counter()
    prepare_airflow(env)
    migrate_s = time.perf_counter() - started
    segment.clear()
    # `dags test` with a logical date runs the interval that ends at it (see sandbox/demo.py).
    measured = run_measured([AIRFLOW, "dags", "test", DAG_ID, WINDOW.end.isoformat()],
                            env=env, log=log)
    if measured.returncode != 0:
        raise BenchError(f"airflow dags test failed (exit {measured.returncode}); "
                         f"log {log}:\n{log_tail(log)}")
    store = AuditStore(f"sqlite:///{home / 'moesif_segment_audit.db'}")
    try:
        record = store.latest_runs(DAG_ID, limit=1)[0]
    finally:
        store.close()
    received = segment.stats()
    if record["status"] != "success" or record["sent"] != expected_messages or (
            received["delivered"] != expected_messages or received["dropped"]):
        raise BenchError(f"the DAG run did not deliver every message: status "
                         f"{record['status']}, sent {record['sent']}, stand-in {received}, "
                         f"expected {expected_messages}")
    return {"seconds": round(measured.seconds, 3), "peak_rss_mb": round(measured.peak_rss_mb, 1),
            "airflow_db_migrate_s": round(migrate_s, 3), "run_id": record["run_id"],
            "task_seconds": record["timings"], "considered": record["considered"],
            "sent": record["sent"], "rejected": record["rejected"],
            "delivered": received["delivered"], "dropped": received["dropped"]}
