"""A small, fixed audit store (three runs) for the history API, UI and CLI tests."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.pipeline.staging import Staging
from moesif_segment_sync.store.audit import AuditStore, BatchEntry, RunKey
from sandbox.environment import connection_env
from tests.support import DAG_ID

SCHEDULED = "scheduled__2026-11-25T01:00:00+00:00"
BACKFILL = "backfill__2026-11-24T01:00:00+00:00"
MANUAL = "manual__2026-11-25T03:10:00+00:00"
SENT_MESSAGES = [
    {"type": "identify", "userId": "u1", "messageId": "moesif-segment-sync-aaa",
     "timestamp": "2026-11-25T00:10:00.000Z", "context": {"active": False},
     "traits": {"id": "u1", "email": "u1@example.com"}},
    {"type": "identify", "userId": "u2", "messageId": "moesif-segment-sync-bbb",
     "timestamp": "2026-11-25T00:20:00.000Z", "context": {"active": False},
     "traits": {"id": "u2"}},
]


# The SCHEDULED run as the history API and the CLI's JSON show it.
SCHEDULED_ROW = {
    "dag_id": "moesif_to_segment", "run_id": SCHEDULED, "mode": "scheduled",
    "status": "success", "window_start": "2026-11-25T00:00:00Z",
    "window_end": "2026-11-25T01:00:00Z", "window_source": "data_interval",
    "dry_run": False, "considered": 10, "sent": 7, "would_send": 0, "unchanged": 2,
    "rejected": 1, "batches": 1, "started_at": "2026-11-25T01:00:05Z",
    "finished_at": "2026-11-25T01:00:09.500000Z", "duration_s": 4.5, "error": None,
    "failed_task": None, "notes": []}


def at(day: int, hour: int, minute: int = 0, second: float = 0) -> datetime:
    whole = int(second)
    return datetime(2026, 11, day, hour, minute, whole, int((second - whole) * 1e6), tzinfo=UTC)


def _run(mode: str, status: str, window: tuple[datetime, datetime], started: datetime,
         finished: datetime, **counts: object) -> dict:
    values = {"considered": 0, "sent": 0, "would_send": 0, "unchanged": 0, "rejected": 0,
              "batches": 0, "dry_run": False, "error": None, "failed_task": None, **counts}
    return {"mode": mode, "status": status, "window_start": window[0], "window_end": window[1],
            "window_source": "data_interval" if mode != "manual" else "params",
            "params": {"start": None, "end": None, "full_refresh": False,
                       "dry_run": values["dry_run"], "force": False},
            "started_at": started, "finished_at": finished,
            "counts": {"routes": {"window": values["considered"]}, "shards": 1,
                       "rejected_by_kind": {"no_user_id": values["rejected"]}
                       if values["rejected"] else {},
                       "warnings": {"unknown_company": 1}},
            "timings": {"extract_users": 1.25, "extract_companies": 0.5, "transform": 2.0,
                        "load": 0.75},
            "staging": f"file:///staging/{DAG_ID}/run", **values}


def seed(url: str, staging_root: str | None = None) -> None:
    store = AuditStore(url)
    store.record_run(RunKey(DAG_ID, SCHEDULED), **_run(
        "scheduled", "success", (at(25, 0), at(25, 1)), at(25, 1, 0, 5), at(25, 1, 0, 9.5),
        considered=10, sent=7, unchanged=2, rejected=1, batches=1))
    store.record_run(RunKey(DAG_ID, BACKFILL), **_run(
        "backfill", "success", (at(24, 0), at(24, 1)), at(26, 7), at(26, 7, 0, 3),
        considered=5, sent=5, batches=1))
    store.record_run(RunKey(DAG_ID, MANUAL), **_run(
        "manual", "failed", (at(25, 2), at(25, 3)), at(25, 3, 10), at(25, 3, 10, 2),
        considered=4, would_send=3, rejected=1, batches=1, dry_run=True,
        error="1 of 4 users rejected (25.0%), over the 5.0% threshold", failed_task="audit"))
    store.record_batch(RunKey(DAG_ID, SCHEDULED), BatchEntry(
        0, 1, "sent", 7, 4000, 2, "moesif-segment-sync-aaa", "moesif-segment-sync-ggg"))
    store.replace_rejects(RunKey(DAG_ID, SCHEDULED), [{
        "entity": "user", "entity_id": None, "kind": "no_user_id", "reason": "user_id is blank",
        "raw_location": "file:///staging/rejects.jsonl.gz#L1",
        "raw_record": '{"user_id":"  ","email":"x@example.com"}'}])
    store.close()
    if staging_root:
        stage = Staging(staging_root, DAG_ID, SCHEDULED)
        with stage.writer(staging.to_send_file(0)) as out:
            for message in SENT_MESSAGES:
                out.write(message)


@contextmanager
def history_client(airflow_home: Path, root: Path,
                   seed_store: Callable[..., None] = seed) -> Iterator:
    """Airflow's own api-server app, with the plugin reading a store under ``root`` that
    ``seed_store`` fills, and the simple auth manager's user admin/admin: a FastAPI
    ``TestClient``."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    url = f"sqlite:///{root / 'audit.db'}"
    seed_store(url, staging_root=(root / "staging").as_uri())
    (airflow_home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        for name, value in connection_env(audit_url=url).items():
            env.setenv(name, value)
        env.setenv("MOESIF_SEGMENT_STAGING_ROOT", (root / "staging").as_uri())
        with TestClient(create_app()) as client:
            yield client


def run_page(airflow_home: Path, root: Path, run_id: str) -> str:
    """The run page of ``run_id`` as admin sees it, from the audit store a `dag.test()` test
    wrote under ``root`` (``tests.dags.support.point_dag_at``)."""
    with history_client(airflow_home, root, seed_store=lambda *_, **__: None) as client:
        token = client.post("/auth/token", json={"username": "admin", "password": "admin"})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return client.get(f"/segment-sync/ui/runs/{quote(run_id, safe='')}", headers=auth).text


def element_text(page: str, element_id: str) -> str:
    """The text of the page's element ``id=element_id`` (one without nested elements of its
    own tag), its spaces collapsed."""
    found = re.search(rf'<(\w+) id="{element_id}">(.*?)</\1>', page, re.S)
    assert found, f"no element #{element_id} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())
