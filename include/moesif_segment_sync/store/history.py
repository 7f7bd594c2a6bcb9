"""Run history: the read side of the audit store, for the UI plugin, its JSON API and the CLI.

Read-only. Each query returns pydantic models, so the API documents itself
and the CLI prints exactly what the API serves.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
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
    """A page of the run's rejects. ``replace_rejects`` numbers a run's rejects 0, 1, 2, ...
    at once, so the count is the last ``seq`` plus one and the page starts at ``seq =
    offset``: both read from the primary key, where ``count(*)`` and ``OFFSET`` walked every
    row before the page (up to 0.7 s at a million, bench/history_load.py)."""
    with store.engine.connect() as db:
        last = db.scalar(sa.select(sa.func.max(rejects.c.seq)).where(key.where(rejects)))
        query = (sa.select(rejects).where(key.where(rejects), rejects.c.seq >= offset)
                 .order_by(rejects.c.seq).limit(limit))
        rows = [RejectRow.model_validate(dict(row)) for row in db.execute(query).mappings()]
    return RejectPage(total=0 if last is None else last + 1, limit=limit, offset=offset,
                      rejects=rows)


def iter_rejects(store: AuditStore, key: RunKey, *, page: int = 5000) -> Iterator[dict]:
    """Every reject of the run in ``seq`` order, as plain dicts of ``REJECT_COLUMNS``, read in
    pages of ``page`` keyed on ``seq`` (the primary key's last column): memory and each
    query's cost stay flat however many rejects the run has."""
    query = (sa.select(*(rejects.c[name] for name in REJECT_COLUMNS)).where(key.where(rejects))
             .order_by(rejects.c.seq).limit(page))
    after = -1
    while True:
        with store.engine.connect() as db:
            rows = [dict(row) for row in db.execute(query.where(rejects.c.seq > after))
                    .mappings()]
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1]["seq"]


def reject_kinds(store: AuditStore, key: RunKey, *, limit: int = 5) -> list[tuple[str, int]]:
    """The run's most frequent reject kinds with their counts, the most frequent first."""
    count = sa.func.count().label("n")
    query = (sa.select(rejects.c.kind, count).where(key.where(rejects))
             .group_by(rejects.c.kind).order_by(count.desc(), rejects.c.kind).limit(limit))
    with store.engine.connect() as db:
        return [(kind, n) for kind, n in db.execute(query)]


# ---------------------------------------------------------------- exports

# Pieces of about this many characters: a server streams each piece with a hop to a thread,
# so one piece per row made a million-row download take minutes (bench/history_load.py).
PIECE = 64 * 1024


def to_jsonl(rows: Iterable[BaseModel | dict], *, piece: int = PIECE) -> Iterator[str]:
    """One JSON object a line, values exactly as stored, in pieces of about ``piece``."""
    return _in_pieces((json.dumps(_plain(row), ensure_ascii=False) + "\n" for row in rows),
                      piece)


def to_csv(rows: Iterable[BaseModel | dict], columns: list[str], *,
           piece: int = PIECE) -> Iterator[str]:
    """CSV with a header, every cell quoted, in pieces of about ``piece`` characters; nested
    values are written as compact JSON and text that a spreadsheet would read as a formula
    is neutralised (``neutralise``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)

    def line(cells: list) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    lines = (line([_cell(data.get(column)) for column in columns])
             for data in map(_plain, rows))
    return _in_pieces(itertools.chain([line(columns)], lines), piece)


def _plain(row: BaseModel | dict) -> dict:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


def _in_pieces(lines: Iterable[str], piece: int) -> Iterator[str]:
    pending: list[str] = []
    size = 0
    for text in lines:
        pending.append(text)
        size += len(text)
        if size >= piece:
            yield "".join(pending)
            pending, size = [], 0
    if pending:
        yield "".join(pending)


def _cell(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))  # { or [ first
    if isinstance(value, str):
        return neutralise(value)
    return "" if value is None else value


# OWASP "CSV Injection": a cell whose first character is one of these is read as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """``text`` with a single quote before it when its first character would start a formula
    in a spreadsheet (OWASP's list, the first character only: a leading space already makes
    the cell text). The writer quotes every cell and doubles the quotes inside, so a comma
    or quote in the value cannot start a new cell either."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def attachment(run_id: str, what: str, fmt: str) -> str:
    """A ``Content-Disposition`` for a run's download, its file name built from the run id in
    ``[A-Za-z0-9._-]`` (every other character a ``-``, at most 100 of them, no leading dot):
    nothing a browser or a shell would read as a path, quote, header break or bidi control."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", run_id)[:100].lstrip(".") or "run"
    return f'attachment; filename="{safe}-{what}.{fmt}"'


RUN_COLUMNS = ["run_id", "mode", "status", "failed_task", "started_at", "window_start",
               "window_end", "considered", "sent", "would_send", "unchanged", "rejected",
               "batches", "duration_s", "error"]
REJECT_COLUMNS = ["seq", "entity", "entity_id", "kind", "reason", "raw_location", "raw_record"]
DIFF_COLUMNS = ["userId", "status", "previous_accepted_at", "added", "changed", "removed"]
MESSAGE_COLUMNS = ["type", "userId", "groupId", "messageId", "timestamp", "traits", "context"]
