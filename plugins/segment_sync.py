"""Airflow plugin: the sync's run history inside Airflow's UI, and a JSON API.

Served by Airflow's api-server under ``/segment-sync``. Every route needs an
authenticated Airflow user (a Bearer token from ``POST /auth/token``, or the
UI's session cookie): without one it answers 401. The pages are plain
server-rendered HTML with an inline SVG chart, so they work offline.
It reads the audit store through the package's read API and never writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from moesif_segment_sync.airflow import context as airflow_context
from moesif_segment_sync.pipeline import Staging, plan
from moesif_segment_sync.settings import load_settings
from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore, RunKey

PREFIX = "/segment-sync"
DAG_ID = "moesif_to_segment"
PAGE_SIZE = 50

app = FastAPI(
    title="Segment sync run history",
    description="Runs of the Moesif to Segment sync: counts, batches and rejects.",
    dependencies=[Depends(get_user)],
)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("segment_sync_templates")),
    autoescape=select_autoescape(["html"]),
)


def store() -> Iterator[AuditStore]:
    audit = AuditStore(airflow_context.audit_url())
    try:
        yield audit
    finally:
        audit.close()


Store = Annotated[AuditStore, Depends(store)]
Mode = Literal["scheduled", "backfill", "manual"]
Status = Literal["success", "failed"]


def _detail(audit: AuditStore, run_id: str, dag_id: str) -> history.RunDetail:
    detail = history.run_detail(audit, RunKey(dag_id, run_id))
    if detail is None:
        raise HTTPException(404, f"no run {run_id!r} of {dag_id} in the audit store")
    return detail


# ---------------------------------------------------------------- JSON API

@app.get("/runs", response_model=history.RunPage, summary="Runs, newest window first")
def runs(audit: Store, since: date | None = None, until: date | None = None,
         status: Status | None = None, mode: Mode | None = None,
         limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
         offset: Annotated[int, Query(ge=0)] = 0, dag_id: str = DAG_ID) -> history.RunPage:
    """Filter by the window's start date (`since` included, `until` excluded), status, mode."""
    return history.list_runs(audit, dag_id, since=_utc_day(since), until=_utc_day(until),
                             status=status, mode=mode, limit=limit, offset=offset)


@app.get("/runs/{run_id}", response_model=history.RunDetail, summary="One run")
def run(run_id: str, audit: Store, dag_id: str = DAG_ID) -> history.RunDetail:
    return _detail(audit, run_id, dag_id)


@app.get("/runs/{run_id}/rejects", response_model=history.RejectPage, summary="A run's rejects")
def run_rejects(run_id: str, audit: Store, dag_id: str = DAG_ID,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                offset: Annotated[int, Query(ge=0)] = 0) -> history.RejectPage:
    _detail(audit, run_id, dag_id)
    return history.list_rejects(audit, RunKey(dag_id, run_id), limit=limit, offset=offset)


@app.get("/runs/{run_id}/export/{what}.{fmt}", summary="Download rejects or sent messages")
def export(run_id: str, what: Literal["rejects", "messages"], fmt: Literal["csv", "jsonl"],
           audit: Store, dag_id: str = DAG_ID) -> StreamingResponse:
    detail = _detail(audit, run_id, dag_id)
    if what == "rejects":
        rows = history.list_rejects(audit, RunKey(dag_id, run_id), limit=10**9).rejects
        columns = history.REJECT_COLUMNS
    else:
        root = airflow_context.staging_root(load_settings().staging_root)
        rows = plan.sent_messages(Staging(root, detail.dag_id, detail.run_id),
                                  detail.counts.get("shards", 1))
        columns = history.MESSAGE_COLUMNS
    body = history.to_csv(rows, columns) if fmt == "csv" else history.to_jsonl(rows)
    filename = f"{run_id.replace(':', '-')}-{what}.{fmt}"
    return StreamingResponse(body, media_type="text/csv" if fmt == "csv" else
                             "application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _utc_day(value: date | None) -> datetime | None:
    return datetime(value.year, value.month, value.day, tzinfo=UTC) if value else None


# ---------------------------------------------------------------- pages

@app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
def history_page(request: Request, audit: Store, since: date | None = None,
                 until: date | None = None, status: Status | None = None,
                 mode: Mode | None = None, page: Annotated[int, Query(ge=1)] = 1,
                 dag_id: str = DAG_ID) -> HTMLResponse:
    listing = history.list_runs(audit, dag_id, since=_utc_day(since), until=_utc_day(until),
                                status=status, mode=mode, limit=PAGE_SIZE,
                                offset=(page - 1) * PAGE_SIZE)
    filters = {"since": since or "", "until": until or "", "status": status or "",
               "mode": mode or ""}
    pages = max(1, math.ceil(listing.total / PAGE_SIZE))

    def page_link(number: int) -> str:
        return "?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": number})

    return HTMLResponse(templates.get_template("history.html").render(
        listing=listing, filters=filters, page=page, pages=pages, page_link=page_link,
        chart=chart(listing.runs), prefix=PREFIX, quote=quote, dag_id=dag_id,
        modes=history.MODES, statuses=history.STATUSES))


@app.get("/ui/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_page(run_id: str, audit: Store, dag_id: str = DAG_ID) -> HTMLResponse:
    if dag_id != DAG_ID:
        return HTMLResponse(templates.get_template("not_ours.html").render(dag_id=dag_id))
    detail = _detail(audit, run_id, dag_id)
    rejects = history.list_rejects(audit, RunKey(dag_id, run_id), limit=200)
    return HTMLResponse(templates.get_template("run.html").render(
        run=detail, rejects=rejects, prefix=PREFIX, quote=quote))


def chart(runs: list[history.RunRow], width: int = 900, height: int = 160) -> str:
    """Sent (or would send) and rejected per run, oldest on the left, as inline SVG."""
    ordered = list(reversed(runs))
    if not ordered:
        return ""
    peak = max(max(r.sent + r.would_send, r.rejected) for r in ordered) or 1
    slot = width / len(ordered)
    bar = min(24.0, max(1.0, slot / 2 - 1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 20}" '
             f'role="img" aria-label="sent and rejected per run">',
             f'<text x="{width}" y="12" text-anchor="end">max {peak:,}</text>']
    for index, item in enumerate(ordered):
        x = index * slot
        for offset, value, css in ((0, item.sent + item.would_send, "sent"),
                                   (bar + 1, item.rejected, "rejected")):
            h = height * value / peak
            parts.append(f'<rect class="{css}" x="{x + offset:.1f}" y="{height - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}"><title>{item.run_id}: '
                         f'{css} {value}</title></rect>')
    parts.append(f'<text x="0" y="{height + 15}">{ordered[0].window_start:%Y-%m-%d %H:%M}</text>')
    parts.append(f'<text x="{width}" y="{height + 15}" text-anchor="end">'
                 f'{ordered[-1].window_start:%Y-%m-%d %H:%M}</text></svg>')
    return "".join(parts)


class SegmentSyncPlugin(AirflowPlugin):
    name = "segment_sync"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Segment sync run history"}]
    external_views = [
        {"name": "Segment sync", "href": f"{PREFIX}/ui/", "destination": "nav",
         "url_route": "segment-sync"},
        {"name": "Segment sync audit", "destination": "dag_run",
         "href": f"{PREFIX}/ui/runs/{{RUN_ID}}?dag_id={{DAG_ID}}",
         "url_route": "segment-sync-run"},
    ]
