"""How fast the stand-ins answer a client that costs next to nothing.

The extract and the load each talk to one stand-in, one request at a time,
so a stage's wall time is its own work plus the stand-in's answer time.
These probes measure the stand-in alone, with a bare ``http.client``
connection and requests built in advance, so the report can say which share
of a stage's time is the stand-in's and whether the stand-in is the limit.
"""

from __future__ import annotations

import base64
import http.client
import math
import time
from urllib.parse import urlsplit

import orjson
from isal import igzip

from moesif_segment_sync import moesif
from moesif_segment_sync.segment import BATCH_PATH, pack
from moesif_segment_sync.settings import SyncSettings

from .config import MOESIF_KEY, PAGE_SIZE, WINDOW, WRITE_KEY
from .process import BenchError

_SENT_AT = "2026-11-25T01:00:02.000Z"
_SORT = b',"sort":'
_HIT_LIST_END = b"}]}}"  # closes the last hit, the hits list, "hits" and the response


def moesif_ceiling(url: str, total: int, *, full_refresh: bool = False) -> tuple[float, float]:
    """Users per second paging through the extract's own query and page size: over the whole
    pass, and after its first page (which, unless the result cache holds the query, sorts
    every match).

    Same query and sort as ``extract_users`` (so the stand-in's result cache
    serves both); of each page only the last hit's sort values are parsed.
    """
    query = moesif.everything() if full_refresh else moesif.changed_in_window(*WINDOW.bounds)
    paginator = moesif.SearchAfterPaginator(PAGE_SIZE)
    path = moesif.SEARCH_PATH.format(entity="users")
    headers = {"Authorization": f"Bearer {MOESIF_KEY}", "Content-Type": "application/json"}
    connection = _connect(url)
    started = first_page_done = time.perf_counter()
    for page in range(math.ceil(total / PAGE_SIZE)):
        if page == 1:
            first_page_done = time.perf_counter()
        body = _post(connection, path, orjson.dumps(paginator.body(query)), headers)
        at = body.rfind(_SORT)
        if at < 0 or not body.endswith(_HIT_LIST_END):
            raise BenchError(f"the Moesif stand-in answered a page without hits: {body[:200]!r}")
        paginator.search_after = orjson.loads(body[at + len(_SORT):-len(_HIT_LIST_END)])
    finished = time.perf_counter()
    connection.close()
    whole = total / (finished - started)
    if total <= PAGE_SIZE:  # one page, none after it: the whole pass's rate
        return whole, whole
    return whole, (total - PAGE_SIZE) / (finished - first_page_done)


def segment_ceiling(url: str, messages: list[bytes], settings: SyncSettings) -> float:
    """Events per second accepted by the Segment stand-in, for batches gzipped in advance.

    Packed and compressed exactly as the sender does; the caller clears the
    stand-in afterwards.
    """
    batches = [(batch.count, igzip.compress(batch.body(_SENT_AT), compresslevel=1))
               for batch in pack(messages, max_bytes=settings.max_batch_bytes,
                                 max_messages=settings.max_batch_messages)]
    headers = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
               "Content-Type": "application/json", "Content-Encoding": "gzip"}
    connection = _connect(url)
    started = time.perf_counter()
    for _, body in batches:
        _post(connection, BATCH_PATH, body, headers)
    seconds = time.perf_counter() - started
    connection.close()
    return sum(count for count, _ in batches) / seconds


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)


def _post(connection: http.client.HTTPConnection, path: str, body: bytes,
          headers: dict[str, str]) -> bytes:
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    content = response.read()
    if response.status != 200:
        raise BenchError(f"stand-in answered {response.status} to POST {path}: {content[:200]!r}")
    return content
