"""A date-range backfill through Airflow's real scheduler (`make e2e`).

Starts `airflow standalone` (SQLite, LocalExecutor, parallelism 4) from this
virtualenv with the stand-ins and connections preset, unpauses the DAG,
creates a 3-day backfill through the REST API, waits for it, and checks the
runs, their windows, what Segment received and the audit store. Every
process it starts is stopped by process group at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from moesif_segment_sync.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import AIRFLOW, airflow_env, connection_env, prepare_airflow
from sandbox.moesif import MoesifStandIn, parse_timestamp_ms
from sandbox.segment import SegmentStandIn
from tests.postgres import free_port

DAG_ID = "moesif_to_segment"
# A range in the past: Airflow creates no backfill run for an interval that has not ended.
FROM, TO = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)
SCHEDULE = "0 */6 * * *"  # 12 windows in 3 days: enough to cross day and window boundaries
LAST_START = TO - timedelta(hours=6)
STARTUP_SECONDS, BACKFILL_SECONDS = 180, 600


class Airflow:
    """A running `airflow standalone` and a token for its REST API."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home, self.env, self.base = home, env, f"http://127.0.0.1:{port}"
        self.log = home / "standalone.log"
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self) -> None:
        with self.log.open("w") as out:
            self.process = subprocess.Popen([AIRFLOW, "standalone"], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(lambda: self._get("/api/v2/monitor/health").status_code == 200,
                   STARTUP_SECONDS, "the api-server to answer")
        token = self.session.post(f"{self.base}/auth/token",
                                  json={"username": "admin", "password": "admin"}).json()
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"
        self._wait(lambda: self._get(f"/api/v2/dags/{DAG_ID}").status_code == 200,
                   STARTUP_SECONDS, "the DAG to be parsed")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def api(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def create_backfill(self, body: dict) -> dict:
        """POST /api/v2/backfills; on SQLite Airflow answers 503 while the scheduler holds the
        database, so a few bounded retries stand in for the PostgreSQL a production set-up has."""
        for _ in range(20):
            response = self.session.post(f"{self.base}/api/v2/backfills", json=body, timeout=30)
            if response.status_code != 503:
                break
            time.sleep(1)
        assert response.ok, f"backfill: {response.status_code} {response.text[:500]}"
        return response.json()

    def _get(self, path: str) -> requests.Response:
        try:
            return self.session.get(self.base + path, timeout=5)
        except requests.ConnectionError:
            return requests.Response()

    def _wait(self, ready, seconds: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + seconds
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")
            time.sleep(1)

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        task_logs = sorted((self.home / "logs").rglob("*.log"), key=os.path.getmtime)[-2:]
        for path in task_logs:
            text += [f"--- {path}"] + path.read_text(errors="replace").splitlines()[-30:]
        return "\n".join(text)


def in_span(record: dict) -> bool:
    low, high = (int(moment.timestamp() * 1000) for moment in (FROM, TO))
    return any(low <= (parse_timestamp_ms(record.get(name)) or -1) < high
               for name in ("modified_time", "last_seen_time"))


@pytest.fixture
def world(tmp_path):
    dataset = generate(600, seed=21, start=FROM, end=TO)
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    port = free_port()
    with MoesifStandIn(dataset.users, dataset.companies, api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment:
        env = airflow_env(home, AIRFLOW__CORE__PARALLELISM="4",
                          AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
                          AIRFLOW__API__PORT=str(port),
                          AIRFLOW__CORE__EXECUTION_API_SERVER_URL=(
                              f"http://127.0.0.1:{port}/execution/"),
                          AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
                          MOESIF_SEGMENT_SCHEDULE=SCHEDULE,
                          **connection_env(moesif.url, segment.url, moesif_key="mk",
                                           write_key="wk"))
        prepare_airflow(env)
        server = Airflow(home, env, port)
        try:
            server.start()
            yield dataset, segment, server
        finally:
            server.stop()


@pytest.mark.timeout(STARTUP_SECONDS + BACKFILL_SECONDS + 120)
def test_a_three_day_backfill_syncs_each_window_once(world):
    dataset, segment, server = world
    server.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    backfill = server.create_backfill({
        # Both dates are logical dates (interval starts), both included.
        "dag_id": DAG_ID, "from_date": FROM.isoformat(), "to_date": LAST_START.isoformat(),
        "max_active_runs": 1, "reprocess_behavior": "none"})

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
    assert len([r for r in records.values() if r["mode"] == "backfill"]) == 12

    changed = {c["company_id"] for c in dataset.companies if in_span(c)}
    expected = {user["user_id"] for index, user in enumerate(dataset.users)
                if index not in dataset.expected_rejects
                and (in_span(user) or user.get("company_id") in changed)}
    assert sorted(m["userId"] for m in segment.delivered.values()) == sorted(expected)
    # Each user's content is the same in every window it falls in: sent once, then unchanged.
    assert len(segment.accepted) == len(expected)
    assert sum(r["unchanged"] for r in records.values() if r["mode"] == "backfill") > 0
