"""The Elasticsearch-style queries this sync sends to Moesif's search endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..codec import format_utc

TIME_FIELDS = ("modified_time", "last_seen_time")


def _iso(moment: datetime) -> str:
    return format_utc(moment)


def _in_window(start: datetime, end: datetime) -> list[dict]:
    bounds = {"gte": _iso(start), "lt": _iso(end)}
    return [{"range": {name: dict(bounds)}} for name in TIME_FIELDS]


def changed_in_window(start: datetime, end: datetime) -> dict:
    """Records whose profile changed or that were seen in ``[start, end)``."""
    return {"bool": {"should": _in_window(start, end), "minimum_should_match": 1}}


def members_of(company_ids: list[str], *, not_changed_in: tuple[datetime, datetime] | None
               = None) -> dict:
    """Users of these companies; optionally only those not already matched by the window."""
    query: dict[str, Any] = {"bool": {"filter": [{"terms": {"company_id.raw": company_ids}}]}}
    if not_changed_in is not None:
        query["bool"]["must_not"] = _in_window(*not_changed_in)
    return query


def users_by_id(user_ids: list[str]) -> dict:
    return {"bool": {"filter": [{"terms": {"user_id.raw": user_ids}}]}}


def companies_by_id(company_ids: list[str]) -> dict:
    return {"bool": {"filter": [{"terms": {"company_id.raw": company_ids}}]}}


def everything() -> dict:
    return {"match_all": {}}
