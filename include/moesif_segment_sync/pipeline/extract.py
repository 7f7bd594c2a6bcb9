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

import orjson

from .. import codec, moesif
from ..chunking import chunks
from ..moesif import MoesifClient
from ..summaries import ExtractedCompanies, ExtractedUsers
from ..window import Window
from . import privacy, staging
from .staging import JsonLinesWriter, Staging


def extract_companies(client: MoesifClient, stage: Staging, window: Window, *,
                      full_refresh: bool) -> ExtractedCompanies:
    """Stage the companies changed or seen in the window (every company on a full refresh)."""
    started = time.monotonic()
    query = moesif.everything() if full_refresh else moesif.changed_in_window(*window.bounds)
    with stage.writer(staging.COMPANIES) as out:
        _copy_hits(client.search("companies", query, label="changed in window"), out)
    return ExtractedCompanies(companies=out.lines, file=stage.url(staging.COMPANIES),
                              requests=client.requests_made,
                              seconds=round(time.monotonic() - started, 3))


def extract_users(client: MoesifClient, stage: Staging, window: Window, *,
                  full_refresh: bool, id_chunk_size: int,
                  hash_fields: Collection[str] = ()) -> ExtractedUsers:
    """Stage the window's users, the users of its changed companies, and their other companies."""
    started = time.monotonic()
    referenced: set[str] = set()
    query = moesif.everything() if full_refresh else moesif.changed_in_window(*window.bounds)
    with stage.writer(staging.USERS) as out:
        referenced |= _copy_hits(client.search("users", query, label="changed in window"), out,
                                 collect="company_id", hash_fields=hash_fields)
    in_window = out.lines

    changed_companies: set[str] = set()
    if not full_refresh:
        for page in client.search("companies", moesif.changed_in_window(*window.bounds),
                                  label="ids changed in window"):
            _add_ids(changed_companies, page.hits, "company_id")
    with stage.writer(staging.USERS_VIA_COMPANY) as out:
        for ids in chunks(sorted(changed_companies), id_chunk_size):
            query = moesif.members_of(ids, not_changed_in=window.bounds)
            referenced |= _copy_hits(client.search("users", query, label="of changed companies"),
                                     out, collect="company_id", hash_fields=hash_fields)
    via_company = out.lines

    # On a full refresh extract_companies stages every company already.
    missing = [] if full_refresh else sorted(referenced - changed_companies)
    with stage.writer(staging.USER_COMPANIES) as out:
        for ids in chunks(missing, id_chunk_size):
            _copy_hits(client.search("companies", moesif.companies_by_id(ids),
                                     label="of extracted users"), out)
    return ExtractedUsers(users_in_window=in_window, users_via_company=via_company,
                          user_companies=out.lines, file=stage.url(staging.USERS),
                          requests=client.requests_made,
                          seconds=round(time.monotonic() - started, 3))


def _copy_hits(pages: Iterator[moesif.Page], out: JsonLinesWriter, *,
               collect: str | None = None, hash_fields: Collection[str] = ()) -> set[str]:
    """Write every hit as one line (``hash_fields`` hashed first); return the values of
    ``collect`` seen in the records. When writing fails, closing the pages waits for the
    search's request in flight, so no thread uses the client after the task ends."""
    seen: set[str] = set()
    with closing(pages):
        for page in pages:
            hits = page.hits
            if hash_fields:
                hits = [privacy.hash_fields(hit, hash_fields) for hit in hits]
            out.write_lines(_lines(hits, lenient=page.lenient_json))
            if collect:
                _add_ids(seen, page.hits, collect)
    return seen


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
