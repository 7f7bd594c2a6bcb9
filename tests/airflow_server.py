"""A running `airflow standalone` for the tests that need Airflow's real scheduler and UI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from sandbox.environment import AIRFLOW, airflow_env, prepare_airflow
from tests.postgres import free_port
from tests.support import DAG_ID

STARTUP_SECONDS = 180


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
        self.wait(lambda: self._get("/api/v2/monitor/health").status_code == 200,
                   STARTUP_SECONDS, "the api-server to answer")
        token = self.session.post(f"{self.base}/auth/token",
                                  json={"username": "admin", "password": "admin"}).json()
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"
        self.wait(lambda: self._get(f"/api/v2/dags/{DAG_ID}").status_code == 200,
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

    def trigger(self, run_id: str, logical_date: str) -> None:
        """A DAG run with this id (queued, if the DAG is paused); SQLite may answer 503 while
        the scheduler holds it."""
        body = {"dag_run_id": run_id, "logical_date": logical_date}
        deadline = time.monotonic() + 30
        while True:
            response = self.session.post(f"{self.base}/api/v2/dags/{DAG_ID}/dagRuns",
                                         json=body, timeout=30)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert response.ok, f"trigger {run_id}: {response.status_code} {response.text[:500]}"

    def _get(self, path: str) -> requests.Response:
        try:
            return self.session.get(self.base + path, timeout=5)
        except requests.ConnectionError:
            return requests.Response()

    def wait(self, ready, seconds: float, what: str) -> None:  # noqa: ANN001
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


@contextlib.contextmanager
def standalone(home: Path, **env: str):  # noqa: ANN201 - yields an Airflow
    """`airflow standalone` on a free port with admin/admin, parallelism 4, the segment_api
    pool and ``env`` (connections, settings); stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    # The simple auth manager reads this file at start instead of generating a password.
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    port = free_port()
    full_env = airflow_env(home, AIRFLOW__CORE__PARALLELISM="4",
                           AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
                           AIRFLOW__API__PORT=str(port),
                           AIRFLOW__CORE__EXECUTION_API_SERVER_URL=(
                               f"http://127.0.0.1:{port}/execution/"),
                           **env)
    prepare_airflow(full_env)
    server = Airflow(home, full_env, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
