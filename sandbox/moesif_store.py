"""The Moesif stand-in's documents on disk, for accounts too large to hold in memory.

In memory (``sandbox.moesif.Collection``) a user costs about 8 KB: a million
fit, ten million do not. A store is one SQLite file with, per document, what a
search needs: its load order, ``_id``, the four timestamps as epoch
milliseconds (``parse_timestamp_ms``, as in memory), the keyword values of
``company_id`` and of the collection's id field, and the hit's head bytes,
serialized once when the store is built. ``DiskCollection`` answers the same
requests as ``Collection`` with the same bytes (``tests/sandbox`` compares them),
for the query subset the sync and the benchmark send:

- ``match_all``, ``match_none``, ``ids``, ``bool`` (``filter``, ``must``,
  ``should``, ``must_not``, ``minimum_should_match``);
- ``range`` and ``exists`` on the timestamps;
- ``term`` / ``terms`` on ``company_id`` and on the id field (``.raw`` or not);
- ``sort`` on the timestamps, ``_id`` and ``_doc``, ``search_after``, ``from``.

Anything else is a 400 that says so. A query's matches, in sort order, are
kept (as row numbers, 8 bytes each) for the next pages, as in memory.
The store is read-only: the control API's upserts and deletes are refused.

The documents are written in the order the sync reads them (``modified_time``
ascending, missing last, then ``_id``): a row's number is its place in that
order, so a full pass reads the file from start to end. A store larger than
memory, read in load order instead, costs a random read per document (a ten
million user store: 24 GB). There are two ways to write one in that order:

- ``StoreWriter`` (``build_store``) takes documents as the in-memory stand-in
  loads them, a later one replacing an earlier one of the same id. It appends
  them in load order to a file beside the store (``<store>.loading``) and then
  copies it into the store sorted, in slices of ``modified_time`` of about a
  gigabyte (each one pass over that file and one sort by SQLite).
- ``write_run`` and ``merge_runs``, for documents whose ids are known to be
  unique (``sandbox.datagen --account``): each batch of documents, sorted in
  memory, is a run file, which a worker process can write; the runs are then
  merged into the store in one pass over each.

Either way, writing a store takes room for it twice.

Build one with ``python -m sandbox.moesif_store --users U.jsonl --companies
C.jsonl --out store.sqlite``, or with ``sandbox.datagen --account``, and
serve it with ``python -m sandbox.moesif --store store.sqlite``. A store of
the earlier layout (rows in load order) is rewritten in the new one with
``python -m sandbox.moesif_store --relayout OLD.sqlite --out store.sqlite``.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import math
import operator
import pickle
import sqlite3
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ._http import HttpError
from ._json import dumps_exact, gc_paused, loads_lenient
from .moesif import (
    _CACHED_QUERIES,
    _TIME_INDEX,
    MISSING_ASC,
    MISSING_DESC,
    TIME_FIELDS,
    Sort,
    _clauses,
    _Doc,
    _keywords,
    _minimum_should_match,
    _own_id,
    _single,
    _term_values,
    mapping_json,
    note_types,
    page_request,
    parse_timestamp_ms,
    range_clause,
    time_range_ms,
)

ID_FIELDS = {"users": "user_id", "companies": "company_id"}
_TIME_COLUMNS = ", ".join(TIME_FIELDS)
_DOC_COLUMNS = f"collection, ord, id, {_TIME_COLUMNS}, head"
# The sync's sort (``moesif.SearchAfterPaginator``): the order of the rows of a store.
_SYNC_ORDER = "modified_time IS NULL, modified_time, id, ord"
_TABLES = f"""
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL, ord INTEGER NOT NULL, id BLOB NOT NULL,
    {", ".join(f"{name} INTEGER" for name in TIME_FIELDS)}, head BLOB NOT NULL{{key}});
CREATE TABLE IF NOT EXISTS keywords (collection TEXT NOT NULL, field TEXT NOT NULL,
                                     key TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mappings (collection TEXT PRIMARY KEY, mapping BLOB NOT NULL);
"""
# Being written: rows in load order, found by their load order.
_LOADING_SCHEMA = _TABLES.format(key=",\n    PRIMARY KEY (collection, ord)")
# Served: the rowid is the place in the sync's order; the load order is a column.
_SCHEMA = _TABLES.format(key="")
_INDEXES = ["CREATE UNIQUE INDEX IF NOT EXISTS docs_id ON docs (collection, id)",
            "CREATE UNIQUE INDEX IF NOT EXISTS docs_ord ON docs (collection, ord)",
            "CREATE INDEX IF NOT EXISTS keywords_key ON keywords (collection, field, key)",
            # Covering: a query on the timestamps sorts without reading a document.
            *(f"CREATE INDEX IF NOT EXISTS docs_{name} ON docs (collection, {name}, id, ord)"
              for name in TIME_FIELDS)]
_WRITING = "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;"
# Documents of one slice of the copy: sorted by SQLite in memory or in its temporary files.
SLICE_BYTES = 1 << 30
# Rows of a run file per pickled block: what the merge holds of each run at a time.
_RUN_BLOCK = 500


# ---------------------------------------------------------------- building

class StoreWriter:
    """Writes documents into a new store as the in-memory stand-in loads them: a document
    whose id is already held replaces it and keeps its place; one without a usable id gets
    ``_doc<order>``. They are appended in load order to ``<store>.loading``, which ``close``
    copies into the store in the sync's order (``relayout``) and deletes."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        if self._path.exists():
            raise FileExistsError(f"{self._path} exists: a store is written once, anew")
        self._loading = self._path.with_name(self._path.name + ".loading")
        self._loading.unlink(missing_ok=True)
        self._db = sqlite3.connect(self._loading, isolation_level=None)
        self._db.executescript(_WRITING + _LOADING_SCHEMA)
        # The unique id index first: replacing a document looks it up.
        self._db.execute(_INDEXES[0])
        self._db.execute("BEGIN")
        self._next = dict.fromkeys(ID_FIELDS, 0)
        self._types: dict[str, dict[str, Any]] = {name: {} for name in ID_FIELDS}
        self.written = dict.fromkeys(ID_FIELDS, 0)
        self._replaced: set[str] = set()

    def add(self, collection: str, sources: Iterable[Any]) -> None:
        id_field, db = ID_FIELDS[collection], self._db
        types = self._types[collection]
        for source in sources:
            doc_id = _own_id(source, id_field)
            order = None
            if doc_id is not None:
                row = db.execute("SELECT ord FROM docs WHERE collection = ? AND id = ?",
                                 (collection, _key(doc_id))).fetchone()
                if row is not None:
                    order = row[0]
                    self._replaced.add(collection)
                    db.execute("DELETE FROM docs WHERE collection = ? AND ord = ?",
                               (collection, order))
                    db.execute("DELETE FROM keywords WHERE collection = ? AND ord = ?",
                               (collection, order))
            if order is None:
                order = self._next[collection]
                self._next[collection] += 1
            doc = _Doc.of(source, doc_id or f"_doc{order}", order)
            db.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (collection, order, _key(doc.id), *doc.times, doc.head))
            db.executemany("INSERT INTO keywords VALUES (?, ?, ?, ?)",
                           [(collection, field, key, order)
                            for field, key in _keyword_rows(source, id_field)])
            note_types(types, source)
            self.written[collection] += 1

    def close(self) -> None:
        for collection, types in self._types.items():
            if collection in self._replaced:  # from the documents held now, in load order
                types = self._held_types(collection)
            self._db.execute("INSERT OR REPLACE INTO mappings VALUES (?, ?)",
                             (collection, mapping_json(types)))
        self._db.execute("COMMIT")
        self._db.close()
        relayout(self._loading, self._path)
        self._loading.unlink()

    def _held_types(self, collection: str) -> dict[str, Any]:
        types: dict[str, Any] = {}
        for head, in self._db.execute("SELECT head FROM docs WHERE collection = ? ORDER BY ord",
                                      (collection,)):
            note_types(types, loads_lenient(head + b"}")["_source"])
        return types


def build_store(path: str | Path, users: Iterable[Any], companies: Iterable[Any]) -> dict:
    """Write ``users`` and ``companies`` into the store at ``path``; returns the counts."""
    writer = StoreWriter(path)
    with gc_paused():
        writer.add("companies", companies)
        writer.add("users", users)
    writer.close()
    return dict(writer.written)


def relayout(source: str | Path, out: str | Path, *, slice_bytes: int = SLICE_BYTES) -> None:
    """Copy the documents, keywords and mappings of ``source`` (a store, or a writer's
    ``.loading`` file) into a new store at ``out``, the rows in the sync's order.

    Each slice of ``modified_time`` (about ``slice_bytes`` of documents) is one pass over
    ``source`` in its own order, which reads it in sequence, and one sort of the slice."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: a store is written once, anew")
    db = sqlite3.connect(out.resolve().as_uri(), uri=True, isolation_level=None)
    db.executescript(_WRITING + _SCHEMA)
    db.execute("ATTACH DATABASE ? AS source", (Path(source).resolve().as_uri() + "?mode=ro",))
    db.execute("BEGIN")
    db.execute("INSERT INTO mappings SELECT collection, mapping FROM source.mappings")
    db.execute("INSERT INTO keywords SELECT collection, field, key, ord FROM source.keywords")
    counts = dict(db.execute("SELECT collection, count(*) FROM source.docs GROUP BY collection"))
    per_doc = Path(source).stat().st_size / max(sum(counts.values()), 1)
    for collection, count in sorted(counts.items()):
        parts = math.ceil(count * per_doc / slice_bytes)
        for condition, params in _slices(db, collection, count, parts):
            db.execute(f"INSERT INTO docs ({_DOC_COLUMNS}) SELECT {_DOC_COLUMNS} FROM "
                       f"source.docs NOT INDEXED WHERE collection = ? AND {condition} "
                       f"ORDER BY {_SYNC_ORDER}", [collection, *params])
    db.execute("COMMIT")
    db.execute("DETACH DATABASE source")
    _index(db)
    db.close()


def _index(db: sqlite3.Connection) -> None:
    """The indexes of a store whose rows are all in, and the statistics the planner reads."""
    for index in _INDEXES:
        db.execute(index)
    db.execute("ANALYZE")


def _slices(db: sqlite3.Connection, collection: str, count: int,
            parts: int) -> list[tuple[str, list[int]]]:
    """Conditions that cut a collection of ``source`` into about ``parts`` slices of
    ``modified_time`` (a moment's documents all in one), in the sync's order."""
    if parts <= 1:
        return [("1", [])]
    step, edges = max(1, count // parts), []
    moments = db.execute("SELECT modified_time FROM source.docs NOT INDEXED WHERE collection = ? "
                         "AND modified_time IS NOT NULL ORDER BY modified_time", (collection,))
    for at, (moment,) in enumerate(moments):
        if at and at % step == 0 and (not edges or moment > edges[-1]):
            edges.append(moment)
    slices: list[tuple[str, list[int]]] = [("modified_time < ?", edges[:1])] if edges else []
    slices += [("modified_time >= ? AND modified_time < ?", [low, high])
               for low, high in itertools.pairwise(edges)]
    slices += [("modified_time >= ?", edges[-1:])] if edges else [("modified_time IS NOT NULL", [])]
    return [*slices, ("modified_time IS NULL", [])]


def _key(doc_id: str) -> bytes:
    return doc_id.encode("utf-8", "surrogatepass")


def _keyword_rows(source: Any, id_field: str) -> list[tuple[str, str]]:
    """(field, key) of the keyword values a ``term`` query on ``company_id`` or the id field
    finds the document by."""
    if not isinstance(source, dict):
        return []
    return [(field, key) for field in dict.fromkeys(("company_id", id_field))
            for key in dict.fromkeys(_keywords(source.get(field)))]


# ---------------------------------------------------------------- building from sorted runs

@dataclass(frozen=True)
class Run:
    """The files of ``write_run``: its documents' rows in the sync's order and their keyword
    rows; and the documents' field types, in load order."""

    docs: Path
    keywords: Path
    types: dict[str, Any]


# A run's row: the sync's order first, as tuples compare (the load order is unique, so no
# comparison goes past it), then the rest of the docs row; ``_DOC_VALUES`` picks that row.
_DOC_VALUES = operator.itemgetter(4, 3, 2, 5, 6, 7, 8, 9)


def write_run(path: str | Path, collection: str, documents: Iterable[tuple[int, Any]], *,
              dumps: Callable[[Any], bytes] = dumps_exact) -> Run:
    """Write ``documents`` of ``collection``, each given with its load order, into a run for
    ``merge_runs``: ``<path>.docs``, their rows sorted in the sync's order (in memory), and
    ``<path>.keywords``.

    Their ids must be unique in the collection (no document replaces another, as one may
    in ``StoreWriter``); one without a usable id gets ``_doc<order>``. ``dumps`` writes a
    source (``_Doc.of``)."""
    id_field = ID_FIELDS[collection]
    rows, keywords, types = [], [], {}
    for order, source in documents:
        doc = _Doc.of(source, _own_id(source, id_field) or f"_doc{order}", order, dumps)
        modified = doc.times[_TIME_INDEX["modified_time"]]
        rows.append((modified is None, modified or 0, _key(doc.id), order, collection,
                     *doc.times, doc.head))
        keywords += [(collection, field, key, order)
                     for field, key in _keyword_rows(source, id_field)]
        note_types(types, source)
    rows.sort()
    run = Run(Path(f"{path}.docs"), Path(f"{path}.keywords"), types)
    _write_blocks(run.docs, rows)
    _write_blocks(run.keywords, keywords)
    return run


def merge_runs(path: str | Path, runs: dict[str, list[Run]]) -> None:
    """Write a new store at ``path`` from the runs of each collection (given in load order,
    which the mapping's field order follows): their rows merged into the sync's order,
    reading each run once, in sequence. The run files are deleted once read, so that the
    store's indexes are built with room on disk and in the page cache."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: a store is written once, anew")
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_WRITING + _SCHEMA)
    db.execute("BEGIN")
    for collection in sorted(runs):  # as relayout: companies first
        types: dict[str, Any] = {}
        for run in runs[collection]:
            for name, kind in run.types.items():
                if types.get(name) is None:
                    types[name] = kind
            db.executemany("INSERT INTO keywords VALUES (?, ?, ?, ?)", _read_blocks(run.keywords))
            run.keywords.unlink()
        db.execute("INSERT INTO mappings VALUES (?, ?)", (collection, mapping_json(types)))
        merged = heapq.merge(*(_read_blocks(run.docs) for run in runs[collection]))
        db.executemany(f"INSERT INTO docs ({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       map(_DOC_VALUES, merged))
        for run in runs[collection]:
            run.docs.unlink()
    db.execute("COMMIT")
    _index(db)
    db.close()


def _write_blocks(path: Path, rows: list[tuple]) -> None:
    with open(path, "wb") as out:
        for at in range(0, len(rows), _RUN_BLOCK):
            pickle.dump(rows[at:at + _RUN_BLOCK], out, protocol=pickle.HIGHEST_PROTOCOL)


def _read_blocks(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as rows:
        while True:
            try:
                block = pickle.load(rows)
            except EOFError:
                return
            yield from block


# ---------------------------------------------------------------- queries as SQL


class _Query:
    """A query as a SQL condition on ``docs`` with its parameters."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.id_field = ID_FIELDS[collection]
        self.params: list[Any] = []

    def sql(self, query: Any) -> str:
        if query is None:
            return "1"
        kind, args = _single(query, "query")
        if kind == "match_all":
            return "1"
        if kind == "match_none":
            return "0"
        if kind in ("term", "terms"):
            field, wanted = _term_values(kind, args)
            return self._terms(field, wanted)
        if kind == "range":
            return self._range(args)
        if kind == "exists":
            field = args.get("field", "") if isinstance(args, dict) else ""
            if field.removesuffix(".raw") not in _TIME_INDEX:
                raise _unsupported(f"[exists] on {field!r}")
            return f"{field.removesuffix('.raw')} IS NOT NULL"
        if kind == "ids":
            values = args.get("values") if isinstance(args, dict) else None
            ids = [_key(value) for value in _clauses(values) if isinstance(value, str)]
            self.params.extend(ids)
            return f"id IN ({', '.join('?' * len(ids))})" if ids else "0"
        if kind == "bool":
            return self._bool(args)
        raise HttpError(400, f"Unsupported query [{kind}]: the stand-in knows bool, range, "
                             "term, terms, ids, exists, match_all and match_none")

    def _terms(self, field: str, wanted: list[Any]) -> str:
        path = field.removesuffix(".raw")
        if path in _TIME_INDEX:
            moments = sorted({parse_timestamp_ms(value) for value in wanted} - {None})
            self.params.extend(moments)
            return f"{path} IN ({', '.join('?' * len(moments))})" if moments else "0"
        if path not in ("company_id", self.id_field):
            raise _unsupported(f"[terms] on {field!r}")
        keys = sorted(set(_keywords(wanted)))
        if not keys:
            return "0"
        self.params.extend([self.collection, path, *keys])
        return (f"ord IN (SELECT ord FROM keywords WHERE collection = ? AND field = ? AND "
                f"key IN ({', '.join('?' * len(keys))}))")

    def _range(self, args: Any) -> str:
        field, bounds = range_clause(args)
        if field not in _TIME_INDEX:
            raise _unsupported(f"[range] on {field!r}")
        self.params.extend(time_range_ms(field, bounds))
        return f"({field} BETWEEN ? AND ?)"

    def _bool(self, args: Any) -> str:
        keys = {"must", "filter", "should", "must_not", "minimum_should_match", "boost"}
        if not isinstance(args, dict) or set(args) - keys:
            raise HttpError(400, f"[bool] takes {sorted(keys)}, got {args!r}")
        required = [self.sql(c) for c in _clauses(args.get("filter")) + _clauses(args.get("must"))]
        should = [self.sql(c) for c in _clauses(args.get("should"))]
        excluded = [self.sql(c) for c in _clauses(args.get("must_not"))]
        default = 1 if should and not required else 0
        at_least = _minimum_should_match(args.get("minimum_should_match"), len(should), default)
        parts = [*required, *(f"NOT coalesce({part}, 0)" for part in excluded)]
        if at_least == 1:
            parts.append(f"({' OR '.join(should)})" if should else "0")
        elif at_least > 1:
            parts.append(f"({' + '.join(f'coalesce({part}, 0)' for part in should)}) >= "
                         f"{int(at_least)}")
        return "(" + " AND ".join(parts) + ")" if parts else "1"


def _unsupported(what: str) -> HttpError:
    return HttpError(400, f"{what} is not supported by the stand-in's disk store (see "
                          "sandbox/moesif_store.py)")


def _order_sql(sort: Sort) -> str:
    """ORDER BY for the sort, missing values last in either direction (as in memory)."""
    terms = []  # and the load order last: Python's sort is stable
    for field in sort.fields:
        if field.name in _TIME_INDEX:
            direction = "DESC" if field.descending else "ASC"
            terms += [f"{field.name} IS NULL", f"{field.name} {direction}"]
        elif field.name == "_id":
            terms.append(f"id {'DESC' if field.descending else 'ASC'}")
        elif field.name == "_doc":
            terms.append(f"ord {'DESC' if field.descending else 'ASC'}")
        else:
            raise _unsupported(f"sort on {field.name!r}")
    return ", ".join([*terms, "ord"])


# ---------------------------------------------------------------- a collection on disk

class DiskCollection:
    """Users or companies of a store: the ``Collection`` interface, read-only."""

    def __init__(self, path: str | Path, collection: str) -> None:
        self._uri = Path(path).resolve().as_uri() + "?mode=ro"
        self.collection = collection
        self.id_field = ID_FIELDS[collection]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._results: OrderedDict[bytes, array] = OrderedDict()
        self._count = self._db().execute("SELECT count(*) FROM docs WHERE collection = ?",
                                         (collection,)).fetchone()[0]

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            db.execute("PRAGMA cache_size = -65536")
            db.execute("PRAGMA mmap_size = 0")
        return db

    def __len__(self) -> int:
        return self._count

    def upsert(self, source: Any) -> str:
        raise HttpError(405, "the stand-in's disk store is read-only")

    def delete(self, doc_id: str) -> bool:
        raise HttpError(405, "the stand-in's disk store is read-only")

    def get(self, doc_id: str) -> _Doc | None:
        row = self._db().execute(
            f"SELECT ord, id, {_TIME_COLUMNS}, head FROM docs WHERE collection = ? AND id = ?",
            (self.collection, _key(doc_id))).fetchone()
        return _doc(row) if row else None

    def mapping(self) -> bytes:
        row = self._db().execute("SELECT mapping FROM mappings WHERE collection = ?",
                                 (self.collection,)).fetchone()
        return row[0] if row else b"{}"

    def count(self, query: Any) -> int:
        where = _Query(self.collection)
        condition = where.sql(query)
        return self._db().execute(f"SELECT count(*) FROM docs WHERE collection = ? AND "
                                  f"{condition}", [self.collection, *where.params]).fetchone()[0]

    def search(self, body: dict, *, max_page_size: int | None) -> bytes:
        """The response body of a search request, as ``Collection.search`` writes it."""
        started = time.perf_counter()
        size, offset, sort = page_request(body, max_page_size)
        matches = self._matching(body.get("query"), sort)
        start = offset
        if body.get("search_after") is not None:
            start = self._position_after(matches, sort, body["search_after"])
        docs = self._docs(matches[start:start + size])
        tail = _tail_of(sort) if sort is not None else None
        hits = b",".join([doc.head + tail(doc) for doc in docs] if tail is not None
                         else [doc.head + b"}" for doc in docs])
        took = int((time.perf_counter() - started) * 1000)
        return b'{"took":%d,"timed_out":false,"hits":{"total":%d,"hits":[%b]}}' % (
            took, len(matches), hits)

    def _matching(self, query: Any, sort: Sort | None) -> array:
        """Row numbers of the matches in sort order, kept for the next pages."""
        cache_key = orjson.dumps([query, sort.spec if sort else None], option=orjson.OPT_SORT_KEYS)
        with self._lock:
            cached = self._results.get(cache_key)
            if cached is not None:
                self._results.move_to_end(cache_key)
                return cached
        where = _Query(self.collection)
        condition = where.sql(query)
        order = _order_sql(sort) if sort is not None else "ord"
        found = array("q")
        cursor = self._db().execute(
            f"SELECT rowid FROM docs WHERE collection = ? AND {condition} ORDER BY {order}",
            [self.collection, *where.params])
        while rows := cursor.fetchmany(100_000):
            found.extend(row[0] for row in rows)
        with self._lock:
            self._results[cache_key] = found
            while len(self._results) > _CACHED_QUERIES:
                self._results.popitem(last=False)
        return found

    def _docs(self, rows: array | list[int]) -> list[_Doc]:
        if not len(rows):
            return []
        wanted = sorted(rows)  # read in the table's order: neighbours share pages
        found = self._db().execute(
            f"SELECT rowid, ord, id, {_TIME_COLUMNS}, head FROM docs WHERE rowid IN "
            f"({', '.join('?' * len(wanted))}) ORDER BY rowid", wanted).fetchall()
        by_row = {row[0]: _doc(row[1:]) for row in found}
        return [by_row[row] for row in rows]

    def _position_after(self, matches: array, sort: Sort, search_after: Any) -> int:
        """Index of the first match strictly after ``search_after`` (a binary search that
        reads one document per step)."""
        if not isinstance(search_after, list) or len(search_after) != len(sort.fields):
            raise HttpError(400, f"search_after must be a list of {len(sort.fields)} value(s), "
                                 f"one per sort field, got {search_after!r}")
        after = tuple(field.after_part(value)
                      for field, value in zip(sort.fields, search_after, strict=True))
        return bisect.bisect_right(range(len(matches)), after,
                                   key=lambda at: sort.key(self._docs([matches[at]])[0]))


def _tail_of(sort: Sort) -> Callable[[_Doc], bytes]:
    """``sort.tail`` (a hit's sort values and closing brace), with the sync's sorts (on the
    timestamps, ``_id`` and ``_doc``) written directly: the same bytes, a fifth of the time."""
    parts: list[Callable[[_Doc], bytes]] = []
    for field in sort.fields:
        if field.name in _TIME_INDEX:
            at = _TIME_INDEX[field.name]
            missing = b"%d" % (MISSING_DESC if field.descending else MISSING_ASC)
            parts.append(lambda doc, at=at, missing=missing:
                         missing if doc.times[at] is None else b"%d" % doc.times[at])
        elif field.name == "_id":
            parts.append(lambda doc: dumps_exact(doc.id))
        elif field.name == "_doc":
            parts.append(lambda doc: b"%d" % doc.order)
        else:
            return sort.tail
    return lambda doc: b',"sort":[' + b",".join([part(doc) for part in parts]) + b"]}"


def _doc(row: tuple) -> _Doc:
    order, key, *times, head = row
    return _Doc(order, key.decode("utf-8", "surrogatepass"), None, head, tuple(times))


def _read_lines(path: Path) -> Iterable[Any]:
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                yield loads_lenient(line)


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.moesif_store``: build a store from JSON Lines files."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.moesif_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=Path, help="users as JSON Lines")
    parser.add_argument("--companies", type=Path, help="companies as JSON Lines")
    parser.add_argument("--relayout", type=Path, metavar="STORE",
                        help="instead, copy this store into --out with its rows in the sync's "
                             "order (for a store of the earlier layout, in load order)")
    parser.add_argument("--out", type=Path, required=True, help="the store (SQLite) to write")
    args = parser.parse_args(argv)
    if args.relayout:
        started = time.perf_counter()
        relayout(args.relayout, args.out)
        print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
        return
    counts = build_store(args.out, _read_lines(args.users) if args.users else [],
                         _read_lines(args.companies) if args.companies else [])
    print(f"wrote {counts['users']} users and {counts['companies']} companies to {args.out}")


if __name__ == "__main__":
    main()

