"""Moesif Management API: a client for the search endpoints, with retries and errors.

What it asks is in ``queries``, how it pages in ``paging``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import requests
import tenacity

from ..codec import loads
from ..errors import MoesifError, TransientHTTPError, redact
from ..progress import Progress
from ..retry import build_retrying, transient_error
from ..settings import SyncSettings
from .paging import Page, SearchAfterPaginator

log = logging.getLogger(__name__)

Entity = Literal["users", "companies"]

SEARCH_PATH = "/v1/search/~/search/{entity}"
_HINTS = {
    401: "check the key and its read:users / read:companies scopes",
    402: "the Moesif subscription is inactive; reactivate it in Moesif's billing settings",
}


@dataclass(frozen=True)
class _PageRequest:
    path: str
    body: bytes
    page_no: int

    @property
    def where(self) -> str:
        return f"POST {self.path} page {self.page_no}"


class MoesifClient:
    """A thin client for the search endpoints: retries, errors, progress."""

    def __init__(self, base_url: str, api_key: str, settings: SyncSettings, *,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._settings = settings
        self._session = session or requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {api_key}",
                                      "Content-Type": "application/json",
                                      "Accept": "application/json"})
        self._sleep = sleep
        self._clock = clock
        self.requests_made = 0

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> MoesifClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, entity: Entity, query: dict, *, label: str = "") -> Iterator[Page]:
        """Every page of hits matching ``query``, in sort order; logs progress per page.

        The next page is asked for as soon as this one's last ``sort`` is known, on a
        thread of its own, so Moesif answers it while the caller handles this page.
        Only the first attempt at a page runs there; parsing, checking and retrying
        happen here, in order, so one request is in flight at a time and retries and
        request counts are those of a plain loop.
        """
        paginator = SearchAfterPaginator(self._settings.page_size)
        path = SEARCH_PATH.format(entity=entity)
        progress = Progress(log, f"Moesif {entity}{f' ({label})' if label else ''}", "records",
                            every=self._settings.progress_seconds)
        with ThreadPoolExecutor(1, thread_name_prefix="moesif-page") as prefetch:
            request = _PageRequest(path, orjson.dumps(paginator.body(query)), 1)
            in_flight: Future[bytes] | None = prefetch.submit(self._post_once, request)
            while in_flight is not None:
                page = self._post(request, first_attempt=in_flight)
                page_no = request.page_no
                paginator.advance(page.hits)
                in_flight = None
                if not paginator.done:
                    request = _PageRequest(path, orjson.dumps(paginator.body(query)), page_no + 1)
                    in_flight = prefetch.submit(self._post_once, request)
                progress.total = page.total
                progress.advance(len(page.hits), f"page {page_no}")
                yield page
        if progress.done:  # an empty lookup (say, one chunk of company ids) says nothing
            progress.finish(f"{page_no:,} page{'' if page_no == 1 else 's'}")

    def get_json(self, path: str) -> Any:
        """One GET answered with JSON (an entity by id, a mapping), returned whole.

        For callers that inspect what Moesif answers (the doctor): the same
        retries, errors and redaction as a search page.
        """
        return self._request_json("GET", path, None)

    def post_json(self, path: str, body: dict) -> Any:
        """One POST answered with JSON, returned whole: a search's shape, not just its hits."""
        return self._request_json("POST", path, orjson.dumps(body))

    def _retrying(self, what: str) -> tenacity.Retrying:
        settings = self._settings
        return build_retrying(
            what=what, max_attempts=settings.max_attempts,
            backoff_initial=settings.backoff_initial, backoff_max=settings.backoff_max,
            rate_limit_jitter=settings.rate_limit_jitter, sleep=self._sleep, clock=self._clock)

    def _request_json(self, method: str, path: str, body: bytes | None) -> Any:
        return self._retrying(f"Moesif {method} {path}")(self._request_json_once, method, path,
                                                         body)

    def _request_json_once(self, method: str, path: str, body: bytes | None) -> Any:
        self.requests_made += 1
        response = self._session.request(method, self.base_url + path, data=body,
                                         timeout=self._settings.http_timeout)
        where = f"{method} {path}"
        self._raise_for_status(response, where)
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise TransientHTTPError(f"Moesif answered a body that is not JSON on {where} "
                                     f"({exc})") from None

    def _post(self, request: _PageRequest, *, first_attempt: Future[bytes]) -> Page:
        """A page, parsed, under the retry policy; its first attempt is already under way."""
        attempts = 0

        def attempt() -> Page:
            nonlocal attempts
            attempts += 1
            content = first_attempt.result() if attempts == 1 else self._post_once(request)
            return self._page(content, request.where)

        return self._retrying(f"Moesif {request.where}")(attempt)

    def _post_once(self, request: _PageRequest) -> bytes:
        self.requests_made += 1
        with self._session.post(self.base_url + request.path, data=request.body, stream=True,
                                timeout=self._settings.http_timeout) as response:
            self._raise_for_status(response, request.where)
            # One read of the whole body: ``content`` reads a page 10 KB at a time.
            return b"".join(response.iter_content(chunk_size=None))

    def _raise_for_status(self, response: requests.Response, where: str) -> None:
        """Retryable answers as ``TransientHTTPError``, other errors as ``MoesifError``."""
        if response.status_code == 200:
            return
        transient = transient_error("moesif", response.status_code,
                                    response.headers.get("Retry-After"), f"on {where}")
        if transient is not None:
            raise transient
        raise MoesifError(response.status_code, self._message(response), endpoint=where,
                          hint=_HINTS.get(response.status_code, ""))

    def _page(self, content: bytes, where: str) -> Page:
        try:
            document, lenient = loads(content)
        except (ValueError, RecursionError) as exc:
            raise TransientHTTPError(f"Moesif answered a page that is not JSON on {where} "
                                     f"({type(exc).__name__}: {str(exc)[:100]})") from None
        hits = document.get("hits") if isinstance(document, dict) else None
        if not isinstance(hits, dict) or not isinstance(hits.get("hits"), list):
            raise TransientHTTPError(f"Moesif answered a page without hits.hits on {where}")
        total = hits.get("total")
        if isinstance(total, dict):  # Elasticsearch 7 style {"value": N}
            total = total.get("value")
        return Page(hits["hits"], total if isinstance(total, int) else None, lenient)

    def _message(self, response: requests.Response) -> str:
        try:
            payload = response.json()
            text = payload.get("message") or payload.get("error") or response.text
        except ValueError:
            text = response.text
        return redact(str(text)[:500], self._key)
