"""A local stand-in for the Moesif Management API's search endpoints (moesif-api.md).

It holds users and companies in memory and answers the Elasticsearch-style
subset the sync uses: ``bool`` / ``range`` / ``term(s)`` / ``match_all``
queries, ``sort`` with ``search_after`` paging, counts, single lookups and
the field mapping. Bad records (no id, blank id, not even an object) are
served as they were loaded, as the real API would serve them, and never
crash the server.

Speed matters because the extract is benchmarked against it: every hit's
bytes are serialized once at load, timestamps are parsed once, and the
filtered, sorted result of a query is cached so that paging through it costs
a binary search and a slice per page.

Run it on its own with ``python -m sandbox.moesif --help``.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ._http import HttpError, Request, Response, StandInServer, json_response, serve_until_signalled
from ._json import dumps_exact, gc_paused, read_jsonl

TIME_FIELDS = ("created", "first_seen_time", "last_seen_time", "modified_time")
_TIME_INDEX = {name: at for at, name in enumerate(TIME_FIELDS)}
_NO_TIMES: tuple[int | None, ...] = (None,) * len(TIME_FIELDS)

# Elasticsearch reports a document's missing numeric sort value as Long.MAX_VALUE
# (ascending) or Long.MIN_VALUE (descending), and accepts it back in search_after.
MISSING_ASC = 2**63 - 1
MISSING_DESC = -(2**63)
# Epoch milliseconds beyond year 9999 are not timestamps (and would not fit a sort value).
_MAX_MS = 253_402_300_800_000
# Offset paging stops here in Elasticsearch (index.max_result_window).
_MAX_RESULT_WINDOW = 10_000
_CACHED_QUERIES = 16

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _looks_like_iso_8601(text: str) -> bool:
    """``YYYY-MM-DD``, alone or followed by ``T`` or a space.

    ``datetime.fromisoformat`` alone would also accept week dates and any
    separator, which Elasticsearch's default date format refuses.
    """
    return (len(text) >= 10 and text[4] == "-" and text[7] == "-"
            and (len(text) == 10 or text[10] in "T "))


def parse_timestamp_ms(value: Any) -> int | None:
    """Epoch milliseconds of a Moesif timestamp, or None when it is not one.

    Accepts the four forms in the data (7 fractional digits with ``Z``, no
    zone meaning UTC, an offset, epoch milliseconds as a number) and, like
    Elasticsearch's ``epoch_millis``, digits in a string. Digits below the
    millisecond are truncated.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            millis = int(text)
        elif _looks_like_iso_8601(text):
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return (moment - _EPOCH) // _ONE_MS
        else:
            return None
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        millis = value
    elif isinstance(value, float) and math.isfinite(value):
        millis = math.floor(value)
    else:
        return None
    return millis if -_MAX_MS < millis < _MAX_MS else None


# ---------------------------------------------------------------- documents

def _own_id(source: Any, id_field: str) -> str | None:
    """The document's id when it has a usable one (a non-blank string)."""
    value = source.get(id_field) if isinstance(source, dict) else None
    return value if isinstance(value, str) and value.strip() else None


@dataclass(slots=True, eq=False)
class _Doc:
    """One stored document with everything a search needs precomputed."""

    order: int  # load order: the order of unsorted results and of synthetic ids
    id: str
    source: Any
    head: bytes  # a hit without its sort values and closing brace: {"_id":…,"_source":…
    times: tuple[int | None, ...]  # TIME_FIELDS as epoch ms, None when missing or bad

    @classmethod
    def of(cls, source: Any, doc_id: str, order: int,
           dumps: Callable[[Any], bytes] = dumps_exact) -> _Doc:
        """``dumps`` writes the source: ``orjson.dumps`` will do for one known to hold no NaN
        (generated data), which spares ``dumps_exact`` reading back every output with a null."""
        times = (tuple(parse_timestamp_ms(source.get(name)) for name in TIME_FIELDS)
                 if isinstance(source, dict) else _NO_TIMES)
        head = b'{"_id":' + dumps_exact(doc_id) + b',"_source":' + dumps(source)
        return cls(order, doc_id, source, head, times)


def _field_getter(name: str) -> Callable[[_Doc], Any]:
    """How to read a query's field from a document.

    ``x.raw`` is Moesif's exact-match (keyword) twin of ``x``: here both read
    the stored value. A dotted name reaches into nested objects.
    """
    path = name.removesuffix(".raw")
    if path == "_id":
        return lambda doc: doc.id
    if path in _TIME_INDEX:
        at = _TIME_INDEX[path]
        return lambda doc: doc.times[at]
    parts = path.split(".")

    def get(doc: _Doc) -> Any:
        value = doc.source
        if not isinstance(value, dict):
            return None
        if path in value:
            return value[path]
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


def _keyword(value: Any) -> str | None:
    """A value as Elasticsearch indexes it in a keyword field (numbers become text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _keywords(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [key for key in map(_keyword, values) if key is not None]


# ---------------------------------------------------------------- queries

Predicate = Callable[[_Doc], bool]


def _clauses(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _single(clause: Any, what: str) -> tuple[str, Any]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise HttpError(400, f"A {what} must be an object with exactly one key, got {clause!r}")
    return next(iter(clause.items()))


def _term_values(kind: str, args: Any) -> tuple[str, list[Any]]:
    """The field and the wanted values of a ``term`` or ``terms`` clause."""
    if not isinstance(args, dict):
        raise HttpError(400, f"[{kind}] takes an object")
    options = {key: value for key, value in args.items() if key != "boost"}
    field, wanted = _single(options, f"[{kind}] clause")
    if kind == "term":
        if isinstance(wanted, dict):
            wanted = wanted.get("value")
        return field, [wanted]
    if not isinstance(wanted, list):
        raise HttpError(400, f"[terms] on {field} takes a list of values")
    return field, wanted


def _term_predicate(field: str, wanted: list[Any]) -> Predicate:
    get = _field_getter(field)
    if field in _TIME_INDEX:
        moments = {parse_timestamp_ms(value) for value in wanted} - {None}
        return lambda doc: get(doc) in moments
    keys = {key for key in map(_keyword, wanted) if key is not None}
    return lambda doc: any(key in keys for key in _keywords(get(doc)))


_RANGE_OPERATORS = {"gte", "gt", "lte", "lt"}
_RANGE_IGNORED = {"format", "time_zone", "boost", "relation"}


def range_clause(args: Any) -> tuple[str, dict[str, Any]]:
    """A ``range`` clause's field and its bounds (``gte``, ``gt``, ``lte``, ``lt``), refused
    with a 400 as Elasticsearch refuses it."""
    field, bounds = _single(args, "[range] clause")
    if not isinstance(bounds, dict) or not bounds.keys() & _RANGE_OPERATORS or (
            bounds.keys() - _RANGE_OPERATORS - _RANGE_IGNORED):
        raise HttpError(400, f"[range] on {field} takes gte, gt, lte and lt, got {bounds!r}")
    return field, {op: value for op, value in bounds.items() if op in _RANGE_OPERATORS}


def time_range_ms(field: str, bounds: dict[str, Any]) -> tuple[int, int]:
    """A time field's ``range`` bounds as inclusive epoch milliseconds: whole milliseconds on
    both sides, so every bound becomes an inclusive one."""
    low, high = -_MAX_MS, _MAX_MS
    for op, value in bounds.items():
        millis = parse_timestamp_ms(value)
        if millis is None:
            raise HttpError(400, f"[range] on {field}: cannot parse {value!r} as a date")
        if op == "gte":
            low = max(low, millis)
        elif op == "gt":
            low = max(low, millis + 1)
        elif op == "lte":
            high = min(high, millis)
        else:
            high = min(high, millis - 1)
    return low, high


def _range_predicate(args: Any) -> Predicate:
    field, bounds = range_clause(args)
    get = _field_getter(field)
    if field in _TIME_INDEX:
        low, high = time_range_ms(field, bounds)

        def in_time_range(doc: _Doc) -> bool:
            moment = get(doc)
            return moment is not None and low <= moment <= high

        return in_time_range

    def in_range(doc: _Doc) -> bool:
        value = get(doc)
        for op, bound in bounds.items():
            comparable = (isinstance(value, str) and isinstance(bound, str)) or (
                _is_number(value) and _is_number(bound))
            if not comparable:
                return False
            if not ((op == "gte" and value >= bound) or (op == "gt" and value > bound)
                    or (op == "lte" and value <= bound) or (op == "lt" and value < bound)):
                return False
        return True

    return in_range


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _minimum_should_match(value: Any, n_should: int, default: int) -> int:
    if value is None:
        return default
    text = str(value).strip()
    try:
        if text.endswith("%"):
            count = int(n_should * int(text[:-1]) / 100)
        else:
            count = int(text)
    except ValueError:
        raise HttpError(400, f"Cannot read minimum_should_match {value!r}") from None
    return n_should + count if count < 0 else count


_BOOL_KEYS = {"must", "filter", "should", "must_not", "minimum_should_match", "boost"}


def _bool_predicate(args: Any) -> Predicate:
    if not isinstance(args, dict) or set(args) - _BOOL_KEYS:
        raise HttpError(400, f"[bool] takes {sorted(_BOOL_KEYS)}, got {args!r}")
    required = [compile_query(c) for c in _clauses(args.get("filter")) + _clauses(args.get("must"))]
    should = [compile_query(c) for c in _clauses(args.get("should"))]
    excluded = [compile_query(c) for c in _clauses(args.get("must_not"))]
    # Elasticsearch: with no filter or must, at least one should clause must match.
    default = 1 if should and not required else 0
    at_least = _minimum_should_match(args.get("minimum_should_match"), len(should), default)

    def matches(doc: _Doc) -> bool:
        for clause in required:
            if not clause(doc):
                return False
        for clause in excluded:
            if clause(doc):
                return False
        if at_least <= 0:
            return True
        if at_least == 1:
            return any(clause(doc) for clause in should)
        return sum(1 for clause in should if clause(doc)) >= at_least

    return matches


def compile_query(query: Any) -> Predicate:
    """A predicate for an Elasticsearch query; anything outside the subset is a 400.

    A document that is not an object has no fields: only field-free clauses
    (``match_all``, ``ids``, and negations) can match it.
    """
    if query is None:
        return lambda doc: True
    kind, args = _single(query, "query")
    if kind == "match_all":
        return lambda doc: True
    if kind == "match_none":
        return lambda doc: False
    if kind in ("term", "terms"):
        return _term_predicate(*_term_values(kind, args))
    if kind == "range":
        return _range_predicate(args)
    if kind == "exists":
        get = _field_getter(args.get("field", "") if isinstance(args, dict) else "")
        return lambda doc: get(doc) not in (None, [])
    if kind == "ids":
        values = args.get("values") if isinstance(args, dict) else None
        ids = {value for value in _clauses(values) if isinstance(value, str)}
        return lambda doc: doc.id in ids
    if kind == "bool":
        return _bool_predicate(args)
    raise HttpError(400, f"Unsupported query [{kind}]: the stand-in knows bool, range, term, "
                         "terms, ids, exists, match_all and match_none")


# ---------------------------------------------------------------- sorting

class _Descending:
    """A string that sorts backwards, for descending keyword sorts."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __gt__(self, other: _Descending) -> bool:
        return other.value > self.value

    __hash__ = None  # type: ignore[assignment]


# A sort key part is (rank, value): numbers rank 0, strings 1, missing 2, so that
# a missing value sorts last in either direction, as in Elasticsearch.
_MISSING_PART = (2, 0)


def _key_part(value: Any, descending: bool) -> tuple[int, Any]:
    if isinstance(value, bool):
        value = int(value)
    if _is_number(value):
        return (0, -value if descending else value)
    if isinstance(value, str):
        return (1, _Descending(value) if descending else value)
    return _MISSING_PART


@dataclass(frozen=True, slots=True)
class _SortField:
    name: str
    descending: bool

    def getter(self) -> Callable[[_Doc], Any]:
        if self.name == "_doc":
            return lambda doc: doc.order
        return _field_getter(self.name)

    def key_part(self) -> Callable[[_Doc], tuple[int, Any]]:
        """This field's part of a document's sort key, with fast paths for the sync's fields."""
        if self.name in _TIME_INDEX:
            at, sign = _TIME_INDEX[self.name], -1 if self.descending else 1

            def time_part(doc: _Doc) -> tuple[int, Any]:
                moment = doc.times[at]
                return _MISSING_PART if moment is None else (0, sign * moment)

            return time_part
        if self.name == "_id" and not self.descending:
            return lambda doc: (1, doc.id)
        get, descending = self.getter(), self.descending
        return lambda doc: _key_part(get(doc), descending)

    def sort_value(self, value: Any) -> Any:
        """What a hit reports in ``sort``; also what ``search_after`` gives back."""
        if value is None and self.name in _TIME_INDEX:
            return MISSING_DESC if self.descending else MISSING_ASC
        if isinstance(value, bool):
            return int(value)
        return value if _is_number(value) or isinstance(value, str) else None

    def after_part(self, value: Any) -> tuple[int, Any]:
        """The key part of a ``search_after`` value, read as this field's type."""
        if value is not None and not (_is_number(value) or isinstance(value, str)):
            raise HttpError(400, f"search_after: {value!r} is not a sort value")
        if self.name in _TIME_INDEX and value is not None:
            if value in (MISSING_ASC, MISSING_DESC):
                value = None
            else:
                millis = parse_timestamp_ms(value)
                if millis is None:
                    raise HttpError(400, f"search_after: cannot read {value!r} as {self.name}")
                value = millis
        return _key_part(value, self.descending)


class Sort:
    """A parsed ``sort``: the key that orders documents and the values each hit reports."""

    def __init__(self, spec: Any) -> None:
        self.fields = [self._field(item) for item in _clauses(spec)]
        if not self.fields:
            raise HttpError(400, "sort is empty")
        self._getters = [field.getter() for field in self.fields]
        self.spec = [[field.name, field.descending] for field in self.fields]
        parts = [field.key_part() for field in self.fields]
        # A new query sorts up to a million keys; the sync's two-field sort
        # skips the generic loop.
        self.key: Callable[[_Doc], tuple[tuple[int, Any], ...]]
        if len(parts) == 2:
            first, second = parts
            self.key = lambda doc: (first(doc), second(doc))
        else:
            self.key = lambda doc: tuple([part(doc) for part in parts])

    @staticmethod
    def _field(item: Any) -> _SortField:
        if isinstance(item, str):
            return _SortField(item, False)
        name, options = _single(item, "sort entry")
        order = options.get("order", "asc") if isinstance(options, dict) else options
        if order not in ("asc", "desc"):
            raise HttpError(400, f"sort order of {name} must be asc or desc, got {order!r}")
        if isinstance(options, dict) and options.get("missing", "_last") != "_last":
            raise HttpError(400, "the stand-in sorts missing values last only")
        return _SortField(name, order == "desc")

    def tail(self, doc: _Doc) -> bytes:
        """The end of a hit: its sort values and the closing brace."""
        values = [field.sort_value(get(doc))
                  for field, get in zip(self.fields, self._getters, strict=True)]
        return b',"sort":' + dumps_exact(values) + b"}"

    def position_after(self, docs: list[_Doc], search_after: Any) -> int:
        """Index of the first document strictly after ``search_after`` in ``docs`` (sorted)."""
        if not isinstance(search_after, list) or len(search_after) != len(self.fields):
            raise HttpError(400, f"search_after must be a list of {len(self.fields)} value(s), "
                                 f"one per sort field, got {search_after!r}")
        after = tuple(field.after_part(value)
                      for field, value in zip(self.fields, search_after, strict=True))
        return bisect.bisect_right(docs, after, key=self.key)


# ---------------------------------------------------------------- a collection

def _int_option(body: dict, name: str, default: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HttpError(400, f"{name} must be a non-negative integer, got {value!r}")
    return value


class _Result:
    """A query's matching documents in sort order, and their hits' tails (sort values) once
    served: paging the same result again costs a slice and a join."""

    __slots__ = ("docs", "_tails")

    def __init__(self, docs: list[_Doc]) -> None:
        self.docs = docs
        self._tails: list[bytes | None] = [None] * len(docs)

    def tail(self, at: int, sort: Sort) -> bytes:
        tail = self._tails[at]
        if tail is None:
            tail = self._tails[at] = sort.tail(self.docs[at])
        return tail


def page_request(body: dict, max_page_size: int | None) -> tuple[int, int, Sort | None]:
    """A search body's ``size``, ``from`` and ``sort``, refused the way Moesif refuses them
    (also ``search_after`` without a sort or beside ``from``)."""
    size = _int_option(body, "size", 10)
    offset = _int_option(body, "from", 0)
    if max_page_size is not None and size > max_page_size:
        raise HttpError(400, f"size {size} is over the largest page size, {max_page_size}")
    if offset and offset + size > _MAX_RESULT_WINDOW:
        raise HttpError(400, f"Result window is too large, from + size must be less than or "
                             f"equal to [{_MAX_RESULT_WINDOW}] but was [{offset + size}]; "
                             "page with search_after instead")
    sort = Sort(body["sort"]) if body.get("sort") is not None else None
    if body.get("search_after") is not None:
        if sort is None:
            raise HttpError(400, "search_after needs a sort")
        if offset:
            raise HttpError(400, "from must be 0 when search_after is used")
    return size, offset, sort


class Collection:
    """Users or companies: the documents in load order, plus caches keyed on their version."""

    def __init__(self, id_field: str, records: Iterable[Any] = ()) -> None:
        self.id_field = id_field
        self._docs: dict[str, _Doc] = {}
        self._next_order = 0
        self._lock = threading.Lock()
        self._version = 0
        self._ordered: list[_Doc] | None = None
        self._results: OrderedDict[bytes, _Result] = OrderedDict()
        self._indexes: dict[str, dict[str, list[_Doc]]] = {}
        self._mapping: bytes | None = None
        with gc_paused():
            for record in records:
                self._put(record)

    def __len__(self) -> int:
        return len(self._docs)

    def _put(self, source: Any) -> str:
        doc_id = _own_id(source, self.id_field)
        existing = self._docs.get(doc_id) if doc_id else None
        if existing is not None:
            order = existing.order
        else:
            order, self._next_order = self._next_order, self._next_order + 1
        doc = _Doc.of(source, doc_id or f"_doc{order}", order)
        self._docs[doc.id] = doc
        return doc.id

    def upsert(self, source: Any) -> str:
        """Add or replace (by id) one document; returns its ``_id``."""
        with self._lock:
            doc_id = self._put(source)
            self._changed()
        return doc_id

    def delete(self, doc_id: str) -> bool:
        with self._lock:
            found = self._docs.pop(doc_id, None) is not None
            self._changed()
        return found

    def _changed(self) -> None:
        self._version += 1
        self._ordered = None
        self._results.clear()
        self._indexes.clear()
        self._mapping = None

    def get(self, doc_id: str) -> _Doc | None:
        return self._docs.get(doc_id)

    def _snapshot(self) -> tuple[int, list[_Doc]]:
        """The data version and the documents in load order, read together."""
        with self._lock:
            if self._ordered is None:
                self._ordered = list(self._docs.values())
            return self._version, self._ordered

    # ------------------------------------------------------------ search

    def search(self, body: dict, *, max_page_size: int | None) -> bytes:
        """The response body of a search request, built from pre-serialized hits."""
        started = time.perf_counter()
        size, offset, sort = page_request(body, max_page_size)
        result = self.matching(body.get("query"), sort)
        matches = result.docs
        start = offset
        if body.get("search_after") is not None:
            start = sort.position_after(matches, body["search_after"])
        page = range(start, min(start + size, len(matches)))
        hits = b",".join([matches[at].head + result.tail(at, sort) for at in page]
                         if sort is not None else [matches[at].head + b"}" for at in page])
        took = int((time.perf_counter() - started) * 1000)
        return b'{"took":%d,"timed_out":false,"hits":{"total":%d,"hits":[%b]}}' % (
            took, len(matches), hits)

    def count(self, query: Any) -> int:
        return len(self.matching(query, None).docs)

    def matching(self, query: Any, sort: Sort | None) -> _Result:
        """The documents matching ``query`` in ``sort`` order, cached until the data changes."""
        predicate = compile_query(query)
        cache_key = orjson.dumps([query, sort.spec if sort else None], option=orjson.OPT_SORT_KEYS)
        with self._lock:
            cached = self._results.get(cache_key)
            if cached is not None:
                self._results.move_to_end(cache_key)
                return cached
        version, docs = self._snapshot()
        with gc_paused():  # the sort makes a key tuple per document
            candidates = self._candidates(query)
            found = [doc for doc in (candidates if candidates is not None else docs)
                     if predicate(doc)]
            if sort is not None:
                found.sort(key=sort.key)
        result = _Result(found)
        with self._lock:
            if version == self._version:
                self._results[cache_key] = result
                while len(self._results) > _CACHED_QUERIES:
                    self._results.popitem(last=False)
        return result

    def _candidates(self, query: Any) -> list[_Doc] | None:
        """A superset of the matches read off an index, when the query requires a term.

        Looking up a chunk of company ids must not scan every user; the full
        predicate still runs on what this returns. None means "scan everything".
        """
        if not isinstance(query, dict) or len(query) != 1:
            return None
        kind, args = next(iter(query.items()))
        if kind in ("term", "terms"):
            field, wanted = _term_values(kind, args)
            if field.removesuffix(".raw") in _TIME_INDEX:
                return None
            index = self._index(field)
            keys = {key for key in map(_keyword, wanted) if key is not None}
            found = dict.fromkeys(doc for key in keys for doc in index.get(key, ()))
            return sorted(found, key=lambda doc: doc.order)
        if kind == "bool" and isinstance(args, dict):
            narrowest = None
            for clause in _clauses(args.get("filter")) + _clauses(args.get("must")):
                candidates = self._candidates(clause)
                if candidates is not None and (narrowest is None or
                                               len(candidates) < len(narrowest)):
                    narrowest = candidates
            return narrowest
        return None

    def _index(self, field: str) -> dict[str, list[_Doc]]:
        """Keyword value -> documents, for one field; built on first use."""
        path = field.removesuffix(".raw")
        version, docs = self._snapshot()
        index = self._indexes.get(path)
        if index is None:
            index = {}
            get = _field_getter(path)
            with gc_paused():
                for doc in docs:
                    for key in _keywords(get(doc)):
                        index.setdefault(key, []).append(doc)
            with self._lock:
                if version == self._version:
                    self._indexes[path] = index
        return index

    # ------------------------------------------------------------ mapping

    def mapping(self) -> bytes:
        """Field name -> Elasticsearch type, from the union of top-level keys."""
        mapping = self._mapping
        if mapping is None:
            version, docs = self._snapshot()
            types: dict[str, dict[str, Any] | None] = {}
            for doc in docs:
                note_types(types, doc.source)
            mapping = mapping_json(types)
            with self._lock:
                if version == self._version:
                    self._mapping = mapping
        return mapping


_TEXT_WITH_RAW = {"type": "text", "fields": {"raw": {"type": "keyword"}}}


def note_types(types: dict[str, dict[str, Any] | None], source: Any) -> None:
    """Add the fields of ``source`` to ``types`` (documents given in load order): a field's
    type is that of its first value that has one."""
    if isinstance(source, dict):
        for name, value in source.items():
            if types.get(name) is None:
                types[name] = _es_type(name, value)


def mapping_json(types: dict[str, dict[str, Any] | None]) -> bytes:
    """The mapping of fields typed by ``note_types`` (a field never typed is a keyword)."""
    return orjson.dumps({name: kind or {"type": "keyword"} for name, kind in types.items()})


def _es_type(name: str, value: Any) -> dict[str, Any] | None:
    if name in _TIME_INDEX:
        return {"type": "date"}
    if isinstance(value, list):
        return next((kind for kind in (_es_type(name, item) for item in value) if kind), None)
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "double"}
    if isinstance(value, str):
        return _TEXT_WITH_RAW
    if isinstance(value, dict):
        return {"type": "object"}
    return None


# ---------------------------------------------------------------- the server

_SCOPES = {"users": "read:users", "companies": "read:companies"}


class MoesifStandIn(StandInServer):
    """The Moesif search API on loopback, with a control API for tests.

    ``users`` and ``companies`` are served exactly as given. ``max_page_size``
    makes a larger ``size`` a 400, to test a client against a smaller limit.
    """

    name = "moesif"

    def __init__(self, users: Iterable[Any] = (), companies: Iterable[Any] = (),
                 api_key: str = "test-moesif-key", max_page_size: int | None = None, *,
                 port: int = 0, verbose: bool = False, store: str | None = None) -> None:
        self.api_key = api_key
        self.max_page_size = max_page_size
        if store is not None:  # an account too large for memory (sandbox.moesif_store)
            from .moesif_store import DiskCollection
            self.collections = {name: DiskCollection(store, name)
                                for name in ("users", "companies")}
        else:
            self.collections = {"users": Collection("user_id", users),
                                "companies": Collection("company_id", companies)}
        super().__init__(port, verbose=verbose)

    # ------------------------------------------------------------ control

    def upsert_user(self, doc: Any) -> str:
        """Add or replace a user (by ``user_id``); returns its ``_id``."""
        return self.collections["users"].upsert(doc)

    def upsert_company(self, doc: Any) -> str:
        """Add or replace a company (by ``company_id``); returns its ``_id``."""
        return self.collections["companies"].upsert(doc)

    def delete_user(self, user_id: str) -> bool:
        return self.collections["users"].delete(user_id)

    def delete_company(self, company_id: str) -> bool:
        return self.collections["companies"].delete(company_id)

    def handle_control(self, request: Request) -> Response:
        route = request.segments[1:]
        entity = route[0] if route else ""
        if entity in self.collections:
            collection = self.collections[entity]
            if request.method == "POST" and len(route) == 1:
                return json_response({"_id": collection.upsert(request.json)})
            if request.method == "DELETE" and len(route) == 2:
                return json_response({"deleted": collection.delete(route[1])})
        return super().handle_control(request)

    # ------------------------------------------------------------ the API

    def describe(self, request: Request) -> dict[str, Any]:
        return {"body": request.json_or_none()}

    def handle_api(self, request: Request) -> Response:
        route = _route(request.segments)
        if route is None:
            raise HttpError(404, f"Not found: {request.path}")
        action, entity, doc_id = route
        if request.method != _METHODS[action]:
            raise HttpError(405, f"{request.method} is not allowed on {request.path}")
        self._authorize(request, entity)
        collection = self.collections[entity]

        if action == "get":
            doc = collection.get(doc_id or "")
            if doc is None:
                raise HttpError(404, f"No {entity[:-1]} with id {doc_id!r}")
            return json_response(doc.head + b"}")
        if action == "mappings":
            return json_response(collection.mapping())
        body = request.json if request.content else {}
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object")
        if action == "count":
            return json_response({"count": collection.count(body.get("query"))})
        return json_response(collection.search(body, max_page_size=self.max_page_size))

    def _authorize(self, request: Request, entity: str) -> None:
        scheme, _, key = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            raise HttpError(401, f"Unauthorized. Missing required scopes: {_SCOPES[entity]}")


_METHODS = {"search": "POST", "count": "POST", "get": "GET", "mappings": "GET"}


def _route(segments: tuple[str, ...]) -> tuple[str, str, str | None] | None:
    """(action, entity, id) of an API path, or None when the stand-in has no such route."""
    match segments:
        case ("v1", "search", "~", "search" | "count" as action, "users" | "companies" as entity):
            return action, entity, None
        case ("v1", "search", "~", "mappings", "users" | "companies" as entity, "properties"):
            return "mappings", entity, None
        case ("v1", "search", "~", "users" | "companies" as entity, doc_id):
            return "get", entity, doc_id
    return None


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.moesif``: serve JSON Lines files until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.moesif", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", help="users as JSON Lines (default: none)")
    parser.add_argument("--companies", help="companies as JSON Lines (default: none)")
    parser.add_argument("--key", default="test-moesif-key", help="the Management API key")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-page-size", type=int, default=None)
    parser.add_argument("--store", help="serve a store file (sandbox.moesif_store) from disk "
                                        "instead of JSON Lines held in memory")
    args = parser.parse_args(argv)
    users = read_jsonl(args.users) if args.users else []
    companies = read_jsonl(args.companies) if args.companies else []
    server = MoesifStandIn(users, companies, args.key, args.max_page_size, port=args.port,
                           verbose=True, store=args.store)
    # The documents live as long as the process and hold no cycles: spare them
    # the collector's full passes, which would stall the first queries.
    gc.freeze()
    server.note(f"serving {len(server.collections['users'])} users and "
                f"{len(server.collections['companies'])} companies"
                + (f" from {args.store}" if args.store else ""))
    serve_until_signalled(server)


if __name__ == "__main__":
    main()
