"""Run history: the read side of the audit store, for the UI plugin, its JSON API and the CLI.

Read-only. Each query returns pydantic models, so the API documents itself
and the CLI prints exactly what the API serves.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ..summaries import RunFigures
from .audit import AuditStore, BatchEntry, RunKey, batches, rejects, runs

MODES = ("scheduled", "backfill", "manual")
SORTS = ("started", "window")
STATUSES = ("success", "failed")


class RunRow(RunFigures):
    """One run, as the history lists it."""

    model_config = ConfigDict(from_attributes=True)

    dag_id: str
    run_id: str
    duration_s: float | None


class RunPage(BaseModel):
    total: int
    limit: int
    offset: int
    runs: list[RunRow]


@pydantic_dataclass(frozen=True)
class BatchRow(BatchEntry):
    """One batch of the ledger, as the history shows it: the entry and when it was written."""

    finished_at: datetime = field(kw_only=True)


class RejectRow(BaseModel):
    seq: int
    entity: str
    entity_id: str | None
    kind: str
    reason: str
    raw_location: str
    raw_record: str


class RunDetail(RunRow):
    params: dict[str, Any]
    counts: dict[str, Any]
    timings: dict[str, float | None]
    staging: str | None
    ledger: list[BatchRow]
    retried_in: list[str] = []  # runs that retried this run's rejects


class RejectPage(BaseModel):
    total: int
    limit: int
    offset: int
    rejects: list[RejectRow]


def _utc(record: dict) -> dict:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return {key: value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None
            else value for key, value in record.items()}


def _row(record: dict) -> dict:
    record = _utc(record)
    started, finished = record.get("started_at"), record.get("finished_at")
    duration = (finished - started).total_seconds() if started and finished else None
    return {**record, "duration_s": round(duration, 3) if duration is not None else None,
            "notes": record.get("notes") or []}  # runs recorded before notes existed


def list_runs(store: AuditStore, dag_id: str, *, since: datetime | None = None,
              until: datetime | None = None, status: str | None = None,
              mode: str | None = None, sort: str = "started", limit: int = 50,
              offset: int = 0) -> RunPage:
    """Runs, the last started first (``sort="window"``: the newest window first);
    ``since``/``until`` bound the window start, ``[since, until)``."""
    where = [runs.c.dag_id == dag_id]
    if since is not None:
        where.append(runs.c.window_start >= since)
    if until is not None:
        where.append(runs.c.window_start < until)
    if status:
        where.append(runs.c.status == status)
    if mode:
        where.append(runs.c.mode == mode)
    with store.engine.connect() as db:
        total = db.scalar(sa.select(sa.func.count()).select_from(runs).where(*where))
        first = runs.c.window_start if sort == "window" else runs.c.started_at
        query = (sa.select(runs).where(*where)
                 .order_by(first.desc().nulls_last(), runs.c.finished_at.desc(),
                           runs.c.run_id.desc())
                 .limit(limit).offset(offset))
        rows = [RunRow.model_validate(_row(dict(row))) for row in db.execute(query).mappings()]
    return RunPage(total=total or 0, limit=limit, offset=offset, runs=rows)


def run_detail(store: AuditStore, key: RunKey) -> RunDetail | None:
    record = store.run(key)
    if record is None:
        return None
    with store.engine.connect() as db:
        query = (sa.select(batches).where(key.where(batches))
                 .order_by(batches.c.shard, batches.c.batch_no))
        ledger = [BatchRow(**{name: value for name, value in _utc(dict(row)).items()
                              if name not in ("dag_id", "run_id")})
                  for row in db.execute(query).mappings()]
        # A retry starts after the run it retries; its params name that run.
        later = sa.select(runs.c.run_id, runs.c.params).where(
            runs.c.dag_id == key.dag_id, runs.c.run_id != key.run_id)
        if record.get("started_at") is not None:
            later = later.where(runs.c.started_at >= record["started_at"])
        retried_in = [run_id for run_id, params in db.execute(later.order_by(runs.c.started_at))
                      if (params or {}).get("retry_rejects_of") == key.run_id]
    return RunDetail.model_validate({**_row(record), "ledger": ledger, "retried_in": retried_in})


def list_rejects(store: AuditStore, key: RunKey, *, limit: int = 100,
                 offset: int = 0) -> RejectPage:
    with store.engine.connect() as db:
        total = db.scalar(sa.select(sa.func.count()).select_from(rejects)
                          .where(key.where(rejects)))
        query = (sa.select(rejects).where(key.where(rejects)).order_by(rejects.c.seq)
                 .limit(limit).offset(offset))
        rows = [RejectRow.model_validate(dict(row)) for row in db.execute(query).mappings()]
    return RejectPage(total=total or 0, limit=limit, offset=offset, rejects=rows)


def reject_kinds(store: AuditStore, key: RunKey, *, limit: int = 5) -> list[tuple[str, int]]:
    """The run's most frequent reject kinds with their counts, the most frequent first."""
    count = sa.func.count().label("n")
    query = (sa.select(rejects.c.kind, count).where(key.where(rejects))
             .group_by(rejects.c.kind).order_by(count.desc(), rejects.c.kind).limit(limit))
    with store.engine.connect() as db:
        return [(kind, n) for kind, n in db.execute(query)]


# ---------------------------------------------------------------- exports

def to_jsonl(rows: Iterable[BaseModel | dict]) -> Iterator[str]:
    for row in rows:
        data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        yield json.dumps(data, ensure_ascii=False, sort_keys=False) + "\n"


def to_csv(rows: Iterable[BaseModel | dict], columns: list[str]) -> Iterator[str]:
    """CSV with a header; nested values are written as compact JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        writer.writerow([_cell(data.get(column)) for column in columns])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "" if value is None else value


RUN_COLUMNS = ["run_id", "mode", "status", "failed_task", "started_at", "window_start",
               "window_end", "considered", "sent", "would_send", "unchanged", "rejected",
               "batches", "duration_s", "error"]
REJECT_COLUMNS = ["seq", "entity", "entity_id", "kind", "reason", "raw_location", "raw_record"]
MESSAGE_COLUMNS = ["userId", "messageId", "timestamp", "traits", "context"]
