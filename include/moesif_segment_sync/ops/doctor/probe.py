"""Questions to Moesif through the sync's own client, counted against a request budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from ...errors import MoesifError, TransientHTTPError
from ...moesif import SEARCH_PATH, Entity, MoesifClient, SearchAfterPaginator, everything
from ...settings import SyncSettings

ENTITIES: tuple[Entity, ...] = ("users", "companies")
SCOPES: dict[Entity, str] = {"users": "read:users", "companies": "read:companies"}
ID_FIELDS: dict[Entity, str] = {"users": "user_id", "companies": "company_id"}
MAPPING_PATH = "/v1/search/~/mappings/{entity}/properties"
ENTITY_PATH = "/v1/search/~/{entity}/{id}"


@dataclass(frozen=True)
class Answer:
    """What one request got: a JSON document, an error, or nothing (budget used up)."""

    document: Any = None
    error: Exception | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.skipped and self.error is None

    @property
    def status(self) -> int | None:
        return getattr(self.error, "status", None)

    def reason(self) -> str:
        if self.skipped:
            return "not asked: the request budget is used up"
        if isinstance(self.error, requests.RequestException):
            return f"no answer: {type(self.error).__name__}: {str(self.error)[:300]}"
        return str(self.error)


class MoesifProbe:
    """Questions to Moesif through the sync's own client, counted against a budget."""

    def __init__(self, client: MoesifClient, budget: int) -> None:
        self.client = client
        self.budget = budget
        self.unasked = 0  # questions the budget left out

    @property
    def used(self) -> int:
        return self.client.requests_made

    def ask(self, method: str, path: str, body: dict | None = None) -> Answer:
        if self.used >= self.budget:
            self.unasked += 1
            return Answer(skipped=True)
        try:
            if method == "GET":
                return Answer(self.client.get_json(path))
            return Answer(self.client.post_json(path, body or {}))
        except (MoesifError, TransientHTTPError, requests.RequestException) as exc:
            return Answer(error=exc)

    def search(self, entity: Entity, size: int) -> Answer:
        """The sync's own first-page request (sort and all), for ``size`` records."""
        body = SearchAfterPaginator(size).body(everything())
        return self.ask("POST", SEARCH_PATH.format(entity=entity), body)


def probe_settings(settings: SyncSettings) -> SyncSettings:
    """One attempt per request: the budget counts requests, and a doctor reports an outage
    rather than waiting it out."""
    return settings.model_copy(update={"max_attempts": 1,
                                       "http_timeout": min(settings.http_timeout, 30.0)})


def search_hits(document: Any) -> list | None:
    hits = document.get("hits") if isinstance(document, dict) else None
    inner = hits.get("hits") if isinstance(hits, dict) else None
    return inner if isinstance(inner, list) else None


def first_hit(document: Any) -> dict | None:
    """The first hit of a search answer, when it is an object."""
    hits = search_hits(document) or [None]
    return hits[0] if isinstance(hits[0], dict) else None
