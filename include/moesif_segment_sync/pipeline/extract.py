"""Extract: Moesif users and companies of a window, staged exactly as the API returned them.

Which users a run identifies (trait-mapping.md): those changed or seen in
the window, plus the users of companies changed or seen in it. The second
route asks Moesif for members *not* already matched by the window, so each
user comes once without holding every id in memory.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import closing
from datetime import datetime, timedelta

import orjson

from .. import codec, moesif
from ..chunking import chunks
from ..codec import format_utc
from ..moesif import MoesifClient
from ..moesif.queries import TIME_FIELDS
from ..summaries import ExtractedCompanies, ExtractedUsers
from ..window import Window
from . import privacy, staging
from .staging import JsonLinesWriter, Staging
from .values import BadValue, to_timestamp


def extract_companies(client: MoesifClient, stage: Staging, window: Window, *,
                      full_refresh: bool, lookback: timedelta = timedelta(0),
                      retry: bool = False) -> ExtractedCompanies:
    """Stage the companies changed or seen in the window and its lookback (every company on
    a full refresh; none on a retry of rejects, whose users bring their own)."""
    started = time.monotonic()
    query = moesif.everything() if full_refresh else moesif.changed_in_window(
        *read_bounds(window, lookback))
    with stage.writer(staging.COMPANIES) as out:
        if not retry:
            _copy_hits(client.search("companies", query, label="changed in window"), out)
    return ExtractedCompanies(companies=out.lines, file=stage.url(staging.COMPANIES),
                              requests=client.requests_made,
                              seconds=round(time.monotonic() - started, 3))


def read_bounds(window: Window, lookback: timedelta) -> tuple[datetime, datetime]:
    """What a run reads: its window, reaching ``lookback`` back into the previous one, so a
    record Moesif indexed after that window's run is still picked up (change detection
    makes the overlap free for records already sent)."""
    return window.start - lookback, window.end


def extract_users(client: MoesifClient, stage: Staging, window: Window, *,
                  full_refresh: bool, id_chunk_size: int,
                  hash_fields: Collection[str] = (),
                  lookback: timedelta = timedelta(0),
                  user_ids: Collection[str] | None = None) -> ExtractedUsers:
    """Stage the window's users, the users of its changed companies, and their other companies.
    The ids of users found only by the lookback go to ``staging.LOOKBACK_IDS``. With
    ``user_ids`` (a retry of a run's rejects), exactly those users, and their companies."""
    started = time.monotonic()
    referenced: set[str] = set()
    bounds = read_bounds(window, lookback)
    query = moesif.everything() if full_refresh else moesif.changed_in_window(*bounds)
    earlier: set[str] = set()
    with stage.writer(staging.USERS) as out:
        if user_ids is not None:  # a retry of rejects: these users, whatever their times
            for ids in chunks(sorted(user_ids), id_chunk_size):
                referenced |= _copy_hits(client.search("users", moesif.users_by_id(ids),
                                                       label="rejected before"),
                                         out, collect="company_id", hash_fields=hash_fields)
        else:
            referenced |= _copy_hits(client.search("users", query, label="changed in window"),
                                     out, collect="company_id", hash_fields=hash_fields,
                                     before=None if full_refresh or not lookback else (
                                         window.start, earlier))
    in_window = out.lines
    if earlier:  # the audit counts which of them were new (``staging.LOOKBACK_IDS``)
        with stage.writer(staging.LOOKBACK_IDS) as ids_out:
            ids_out.write_lines([orjson.dumps(user_id) for user_id in sorted(earlier)])

    changed_companies: set[str] = set()
    if not full_refresh and user_ids is None:
        for page in client.search("companies", moesif.changed_in_window(*bounds),
                                  label="ids changed in window"):
            _add_ids(changed_companies, page.hits, "company_id")
    with stage.writer(staging.USERS_VIA_COMPANY) as out:
        for ids in chunks(sorted(changed_companies), id_chunk_size):
            query = moesif.members_of(ids, not_changed_in=bounds)
            referenced |= _copy_hits(client.search("users", query, label="of changed companies"),
                                     out, collect="company_id", hash_fields=hash_fields)
    via_company = out.lines

    # On a full refresh extract_companies stages every company already; a retry stages
    # only the companies of its users (extract_companies stages none).
    missing = [] if full_refresh else sorted(referenced - changed_companies)
    with stage.writer(staging.USER_COMPANIES) as out:
        for ids in chunks(missing, id_chunk_size):
            _copy_hits(client.search("companies", moesif.companies_by_id(ids),
                                     label="of extracted users"), out)
    return ExtractedUsers(users_in_window=in_window, users_via_company=via_company,
                          users_in_lookback=len(earlier),
                          user_companies=out.lines, file=stage.url(staging.USERS),
                          requests=client.requests_made,
                          seconds=round(time.monotonic() - started, 3))


def _copy_hits(pages: Iterator[moesif.Page], out: JsonLinesWriter, *,
               collect: str | None = None, hash_fields: Collection[str] = (),
               before: tuple[datetime, set[str]] | None = None) -> set[str]:
    """Write every hit as one line (``hash_fields`` hashed first); return the values of
    ``collect`` seen in the records. With ``before`` (a moment and a set), the ids of records
    neither changed nor seen since that moment go into the set. When writing fails, closing
    the pages waits for the search's request in flight, so no thread uses the client after
    the task ends."""
    seen: set[str] = set()
    with closing(pages):
        for page in pages:
            hits = page.hits
            if before is not None:
                _add_earlier(before[1], hits, format_utc(before[0]))
            if hash_fields:
                hits = [privacy.hash_fields(hit, hash_fields) for hit in hits]
            out.write_lines(_lines(hits, lenient=page.lenient_json))
            if collect:
                _add_ids(seen, page.hits, collect)
    return seen


def _add_earlier(found: set[str], hits: list, start: str) -> None:
    """The user ids of hits whose every time field is before ``start`` (ISO, UTC, ms)."""
    for hit in hits:
        source = hit.get("_source") if isinstance(hit, dict) else None
        if not isinstance(source, dict) or not isinstance(source.get("user_id"), str):
            continue
        moments = []
        for name in TIME_FIELDS:
            try:
                moments.append(to_timestamp(source.get(name)))
            except BadValue:
                continue
        if moments and max(moments) < start:
            found.add(source["user_id"])


def _lines(hits: list, *, lenient: bool) -> list[bytes]:
    """A page's hits as staged lines: what ``codec.dumps`` writes for each, with one call
    per page for the usual page that orjson can write whole."""
    if not lenient:
        try:
            return list(map(orjson.dumps, hits))
        except (orjson.JSONEncodeError, TypeError):
            pass
    return [codec.dumps(hit, lenient=lenient) for hit in hits]


def _add_ids(found: set[str], hits: list, field: str) -> None:
    for hit in hits:
        source = hit.get("_source") if isinstance(hit, dict) else None
        value = source.get(field) if isinstance(source, dict) else None
        if isinstance(value, str) and value.strip():
            found.add(value)
