"""Airflow plugin: the sync's run history inside Airflow's UI, and a JSON API.

Registered through the package's ``airflow.plugins`` entry point, so ``pip install``ing the
package into an Airflow brings it; ``plugins/segment_sync.py`` loads it where the package is
only on ``PYTHONPATH``.

Served by Airflow's api-server under ``/segment-sync``. Every route needs an
authenticated Airflow user (a Bearer token from ``POST /auth/token``, or the
UI's session cookie): without one it answers 401. Every route then asks the
configured auth manager, as Airflow's own API does, whether that user may read
the runs of the DAG it serves (``dag_id``, default ``moesif_to_segment``): if
not, 403. Raw reject records and sent messages (personal data) can require
more: ``MOESIF_SEGMENT_PII_ACCESS=edit`` asks for edit access to the DAG's runs. The pages are plain
server-rendered HTML with an inline SVG chart, so they work offline.
It reads the audit store through the package's read API and never writes.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BeforeValidator

from ..pipeline import Staging, diff, plan
from ..settings import SyncSettings, load_settings
from ..store import history
from ..store.audit import AuditStore, RunKey
from . import context as airflow_context

PREFIX = "/segment-sync"
DAG_ID = "moesif_to_segment"
PAGE_SIZE = 50

app = FastAPI(
    title="Segment sync run history",
    description="Runs of the Moesif to Segment sync: counts, batches and rejects.",
    dependencies=[Depends(get_user)],
)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
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
Sort = Literal["started", "window"]


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


# The page's filter form submits an untouched field as an empty string: that means "any".
FormDate = Annotated[date | None, BeforeValidator(_blank_is_none)]
FormStatus = Annotated[Status | None, BeforeValidator(_blank_is_none)]
FormMode = Annotated[Mode | None, BeforeValidator(_blank_is_none)]


def _may(user: BaseUser, dag_id: str, method: ResourceMethod) -> bool:
    return get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id),
        user=user)


def readable_dag(user: GetUserDep, dag_id: str = DAG_ID) -> str:
    """The ``dag_id`` of the request, once the auth manager says the user may read its runs."""
    if not _may(user, dag_id, "GET"):
        raise HTTPException(403, f"you may not read the runs of DAG {dag_id!r}: ask an Airflow "
                                 "admin for read access to that DAG's runs")
    return dag_id


ReadableDag = Annotated[str, Depends(readable_dag)]


def may_see_personal_data(user: BaseUser, dag_id: str) -> bool:
    """Raw reject records and sent messages: read access to the runs, or edit access when
    ``MOESIF_SEGMENT_PII_ACCESS=edit``."""
    return load_settings().pii_access == "read" or _may(user, dag_id, "PUT")


def personal_data_dag(user: GetUserDep, dag_id: ReadableDag) -> str:
    if not may_see_personal_data(user, dag_id):
        raise HTTPException(403, f"downloads hold personal data: they need edit access to the "
                                 f"runs of DAG {dag_id!r} (MOESIF_SEGMENT_PII_ACCESS=edit)")
    return dag_id


PersonalDataDag = Annotated[str, Depends(personal_data_dag)]


def _detail(audit: AuditStore, run_id: str, dag_id: str) -> history.RunDetail:
    detail = history.run_detail(audit, RunKey(dag_id, run_id))
    if detail is None:
        raise HTTPException(404, f"no run {run_id!r} of {dag_id} in the audit store")
    return detail


# ---------------------------------------------------------------- JSON API

@app.get("/runs", response_model=history.RunPage, summary="Runs, the last started first")
def runs(audit: Store, dag_id: ReadableDag, since: date | None = None,
         until: date | None = None,
         status: Status | None = None, mode: Mode | None = None, sort: Sort = "started",
         limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
         offset: Annotated[int, Query(ge=0)] = 0) -> history.RunPage:
    """Filter by the window's start date (`since` included, `until` excluded), status, mode;
    `sort=window` lists the newest window first."""
    return history.list_runs(audit, dag_id, since=_utc_day(since), until=_utc_day(until),
                             status=status, mode=mode, sort=sort, limit=limit, offset=offset)


@app.get("/runs/{run_id}", response_model=history.RunDetail, summary="One run")
def run(run_id: str, audit: Store, dag_id: ReadableDag) -> history.RunDetail:
    return _detail(audit, run_id, dag_id)


@app.get("/runs/{run_id}/rejects", response_model=history.RejectPage, summary="A run's rejects")
def run_rejects(run_id: str, audit: Store, dag_id: PersonalDataDag,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                offset: Annotated[int, Query(ge=0)] = 0) -> history.RejectPage:
    _detail(audit, run_id, dag_id)
    return history.list_rejects(audit, RunKey(dag_id, run_id), limit=limit, offset=offset)


@app.get("/runs/{run_id}/export/{what}.{fmt}",
         summary="Download rejects, sent messages or a dry run's diff preview")
def export(run_id: str, what: Literal["rejects", "messages", "diff"],
           fmt: Literal["csv", "jsonl"], audit: Store,
           dag_id: PersonalDataDag) -> StreamingResponse:
    detail = _detail(audit, run_id, dag_id)
    if what == "rejects":
        rows = history.iter_rejects(audit, RunKey(dag_id, run_id))
        columns = history.REJECT_COLUMNS
    else:
        root = airflow_context.staging_root(load_settings().staging_root)
        stage = Staging(root, detail.dag_id, detail.run_id)
        shards = detail.counts.get("shards", 1)
        if what == "diff":
            rows = diff.staged(stage, shards)
            columns = history.DIFF_COLUMNS
        else:
            rows = plan.sent_messages(stage, shards)
            columns = history.MESSAGE_COLUMNS
    body = history.to_csv(rows, columns) if fmt == "csv" else history.to_jsonl(rows)
    return StreamingResponse(body, media_type="text/csv" if fmt == "csv" else
                             "application/x-ndjson",
                             headers={"Content-Disposition": history.attachment(run_id, what, fmt)})


def _utc_day(value: date | None) -> datetime | None:
    return datetime(value.year, value.month, value.day, tzinfo=UTC) if value else None


# ---------------------------------------------------------------- pages

@app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
def history_page(request: Request, audit: Store, dag_id: ReadableDag, since: FormDate = None,
                 until: FormDate = None, status: FormStatus = None,
                 mode: FormMode = None, sort: Sort = "started",
                 page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    listing = history.list_runs(audit, dag_id, since=_utc_day(since), until=_utc_day(until),
                                status=status, mode=mode, sort=sort, limit=PAGE_SIZE,
                                offset=(page - 1) * PAGE_SIZE)
    filters = {"since": since or "", "until": until or "", "status": status or "",
               "mode": mode or "", "sort": sort}
    pages = max(1, math.ceil(listing.total / PAGE_SIZE))

    def page_link(number: int) -> str:
        return "?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": number})

    return HTMLResponse(templates.get_template("history.html").render(
        listing=listing, filters=filters, page=page, pages=pages, page_link=page_link,
        chart=chart(listing.runs), prefix=PREFIX, quote=quote, dag_id=dag_id,
        modes=history.MODES, statuses=history.STATUSES, sorts=history.SORTS))


@app.get("/ui/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_page(run_id: str, audit: Store, user: GetUserDep, dag_id: ReadableDag) -> HTMLResponse:
    if dag_id != DAG_ID:
        return HTMLResponse(templates.get_template("not_ours.html").render(dag_id=dag_id))
    detail = _detail(audit, run_id, dag_id)
    rejects = history.list_rejects(audit, RunKey(dag_id, run_id), limit=200)
    settings = load_settings()
    privacy = privacy_of(detail, settings)
    return HTMLResponse(templates.get_template("run.html").render(
        run=detail, rejects=rejects, prefix=PREFIX, quote=quote,
        personal_data=may_see_personal_data(user, dag_id),
        raw_records=settings.history_raw_records, privacy=privacy,
        without_denied=functools.partial(without_denied, deny=privacy["trait_deny"])))


def without_denied(raw: str, *, deny: list[str]) -> str:
    """A raw record as the page shows it: without the top-level fields the run's trait deny
    list kept out of Segment (hashed fields are hashed in it already, as staged)."""
    if not deny:
        return raw
    try:
        record = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(record, dict):
        return raw
    return json.dumps({k: v for k, v in record.items() if k not in deny},
                      ensure_ascii=False, separators=(",", ":"))


def privacy_of(detail: history.RunDetail, settings: SyncSettings) -> dict:
    """What the run hid: its own record of it, or today's settings for an older run."""
    recorded = detail.counts.get("privacy")
    if recorded is not None:
        return {**recorded, "recorded": True}
    return {"hash_fields": settings.hash_fields, "trait_allow": settings.trait_allow,
            "trait_deny": settings.trait_deny, "recorded": False}


def chart(runs: list[history.RunRow], width: int = 900, height: int = 160) -> dict | None:
    """Sent (or, in a dry run, would send), unchanged and rejected per run, one group of bars
    per run in the order of the page reversed (oldest on the left), as numbers the template
    draws into inline SVG (escaped like every other value it renders)."""
    ordered = list(reversed(runs))
    if not ordered:
        return None
    peak = max(max(r.sent + r.would_send, r.unchanged, r.rejected) for r in ordered) or 1
    slot = width / len(ordered)
    bar = min(16.0, max(1.0, slot / 3 - 1))
    groups = []
    for index, item in enumerate(ordered):
        bars = []
        for offset, (css, label, value) in enumerate((
                ("sent", "would send" if item.dry_run else "sent",
                 item.would_send if item.dry_run else item.sent),
                ("unchanged", "unchanged", item.unchanged),
                ("rejected", "rejected", item.rejected))):
            h = height * value / peak
            bars.append({"css": css, "x": round(index * slot + offset * (bar + 1), 1),
                         "y": round(height - h, 1), "h": round(h, 1),
                         "title": f"{item.run_id}: {label} {value:,}"})
        groups.append(bars)
    return {"width": width, "height": height, "bar": round(bar, 1), "peak": peak,
            "groups": groups, "first": ordered[0].run_id, "last": ordered[-1].run_id}


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
