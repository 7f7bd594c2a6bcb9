"""The audit store: runs, the batch ledger and rejects, in any SQLAlchemy database.

The embedded default is a SQLite file under ``AIRFLOW_HOME``; production uses
PostgreSQL. Tables are created on first use and the schema carries a
version, so a later release can migrate it and an older one refuses a newer
schema instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..chunking import chunks
from ..errors import AccountingError, ConfigError, SyncError

SCHEMA_VERSION = 4
# Columns each version added to a store created by an earlier one: {version: [(table, column)]}.
# (Version 3 also added a table, sync_user_state_delta, which create_all makes; so does a
# store of any version gain sync_content_purges, which needs no version of its own.)
_ADDED = {2: [("sync_runs", "failed_task"), ("sync_runs", "notes")],
          4: [(table, column) for table in ("sync_user_state", "sync_user_state_delta")
              for column in ("traits_mask", "content")]}
# Indexes each version added: {version: [index name]}.
_INDEXED = {3: ["ix_sync_runs_started", "ix_sync_runs_window"]}

metadata = sa.MetaData()

schema_version = sa.Table(
    "sync_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "sync_runs", metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("mode", sa.String(20), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_source", sa.String(40), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("considered", sa.Integer, nullable=False, default=0),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("would_send", sa.Integer, nullable=False, default=0),
    sa.Column("unchanged", sa.Integer, nullable=False, default=0),
    sa.Column("rejected", sa.Integer, nullable=False, default=0),
    sa.Column("batches", sa.Integer, nullable=False, default=0),
    sa.Column("counts", sa.JSON, nullable=False),   # routes, rejects and warnings by kind
    sa.Column("timings", sa.JSON, nullable=False),  # seconds per stage
    sa.Column("staging", sa.Text),                  # URL of the run's staged files
    sa.Column("error", sa.Text),
    sa.Column("failed_task", sa.String(250)),       # the task a failed run stopped in
    sa.Column("notes", sa.JSON),                    # what a person should know about the run
)


def _newest_first(name: str, first: sa.Column) -> None:
    """The index the history's listing walks: a DAG's runs by ``first`` descending, nulls
    last, then ``finished_at`` and ``run_id`` descending, so a page is read from the index
    in order instead of sorting every run. SQLite puts nulls first in ascending order, so a
    plain index read backwards is that order (and it refuses NULLS LAST in an index);
    PostgreSQL puts them last, so its index spells the order out. (An index joins its
    table's metadata as it is made.)"""
    def postgresql(_ddl: object, _target: object, _bind: object, **kw: Any) -> bool:
        return kw["dialect"].name == "postgresql"

    def other(_ddl: object, _target: object, _bind: object, **kw: Any) -> bool:
        return kw["dialect"].name != "postgresql"

    sa.Index(name, runs.c.dag_id, first.desc().nulls_last(), runs.c.finished_at.desc(),
             runs.c.run_id.desc()).ddl_if(callable_=postgresql)
    sa.Index(name, runs.c.dag_id, first, runs.c.finished_at, runs.c.run_id).ddl_if(
        callable_=other)


_newest_first("ix_sync_runs_started", runs.c.started_at)
_newest_first("ix_sync_runs_window", runs.c.window_start)

batches = sa.Table(
    "sync_batches", metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(20), nullable=False),  # sent, dry_run or failed
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_message_id", sa.String(100)),
    sa.Column("last_message_id", sa.String(100)),
    sa.Column("error", sa.Text),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
)

rejects = sa.Table(
    "sync_rejects", metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity", sa.String(20), nullable=False),
    sa.Column("entity_id", sa.Text),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw_location", sa.Text, nullable=False),  # staged file and line number
    sa.Column("raw_record", sa.Text, nullable=False),
)

def _accepted_columns(*, keyed: bool) -> list[sa.Column]:
    """A user's accepted identify, as the state and its delta both hold it (``keyed``: the
    DAG and the user are the primary key): its messageId, which top-level traits it had
    (``mapping.trait_mask``; for ``MOESIF_SEGMENT_REMOVED_TRAITS``) and, for the diff
    preview, the message itself compressed (``pipeline.diff.pack``) unless
    ``MOESIF_SEGMENT_CONTENT_RETENTION`` is 0 or has passed (then NULL)."""
    return [
        sa.Column("dag_id", sa.String(250), primary_key=keyed, nullable=False),
        sa.Column("user_id", sa.Text, primary_key=keyed, nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("traits_mask", sa.BigInteger),
        sa.Column("content", sa.LargeBinary),
    ]


# Change detection: per user, the last identify Segment accepted from this DAG, and under
# ``group_scope(dag_id)`` the last group call.
user_state = sa.Table("sync_user_state", metadata, *_accepted_columns(keyed=True))


def group_scope(dag_id: str) -> str:
    """Where the state keeps a DAG's group calls: its id and ``:group``, a name no DAG can
    have (Airflow allows letters, digits, ``-``, ``_`` and ``.``), so a user's identify and
    group call are told apart without a column of their own."""
    return f"{dag_id}:group"

# The users a batch's 200 made accepted, appended in the batch's transaction and folded into
# sync_user_state once, sorted, at the end of each load (``fold_user_state``). Appending keeps
# a batch's commit to a few pages, where upserting its users into a table of millions dirtied
# two random pages a user; the fold writes each page of the big table at most once, in order.
user_state_delta = sa.Table(
    "sync_user_state_delta", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    *_accepted_columns(keyed=False),
)
# When the kept content of a DAG's users was last purged (``purge_content``): a purge reads every
# row of the DAG's state, so it runs once a day, not once a run.
content_purges = sa.Table(
    "sync_content_purges", metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
)
# Content is forgotten at most this long after its retention passed.
PURGE_EVERY = timedelta(days=1)
_STATE_COLUMNS = [column.name for column in user_state.columns]
_DELTA_COLUMNS = [column.name for column in user_state_delta.columns if column.name != "seq"]


@dataclass(frozen=True)
class RunKey:
    dag_id: str
    run_id: str

    def where(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(table.c.dag_id == self.dag_id, table.c.run_id == self.run_id)


@dataclass(frozen=True)
class BatchEntry:
    shard: int
    batch_no: int
    status: str
    messages: int
    bytes: int
    attempts: int
    first_message_id: str | None = None
    last_message_id: str | None = None
    error: str | None = None


def now() -> datetime:
    return datetime.now(UTC)


class AuditStore:
    """Reads and writes the audit tables; every write is one transaction."""

    def __init__(self, url: str, *, lock_timeout: float = 30.0) -> None:
        try:
            self.engine = sa.create_engine(url, **_engine_options(url, lock_timeout))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"audit store URL is not usable ({_safe_url(url)}): {exc}") from None
        self.url = _safe_url(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_write_ahead_log)
        self._append_delta = _insert_text(user_state_delta, self.engine.dialect)
        self._accepted_query = _lookup(user_state, user_state.c.user_id)
        self._delta_query = _lookup(user_state_delta, user_state_delta.c.seq)
        self._ensure_schema()

    def close(self) -> None:
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        try:
            metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as db:
                found = db.scalar(sa.select(sa.func.max(schema_version.c.version)))
                if found is None:
                    db.execute(schema_version.insert().values(version=SCHEMA_VERSION,
                                                              applied_at=now()))
                elif found > SCHEMA_VERSION:
                    raise ConfigError(f"audit store {self.url} has schema version {found}, newer "
                                      f"than this release's {SCHEMA_VERSION}: upgrade the sync")
                elif found < SCHEMA_VERSION:
                    self._upgrade(db, found)
        except SQLAlchemyError as exc:
            raise SyncError(f"audit store {self.url} is unavailable: {_reason(exc)}") from None

    def _upgrade(self, db: sa.Connection, found: int) -> None:
        """Add the columns and indexes of the versions after ``found`` to a store an older
        release made."""
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for table_name, column_name in _ADDED.get(version, []):
                if column_name in {found["name"] for found in
                                   sa.inspect(db).get_columns(table_name)}:
                    continue  # a table create_all made just now, with today's columns
                column = metadata.tables[table_name].c[column_name]
                kind = column.type.compile(dialect=self.engine.dialect)
                db.execute(sa.text(f"ALTER TABLE {table_name} ADD COLUMN {column_name} {kind}"))
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    if index.name in _INDEXED.get(version, []):
                        index.create(db, checkfirst=True)
            db.execute(schema_version.insert().values(version=version, applied_at=now()))

    # ---------------------------------------------------------------- ledger

    def ledger(self, key: RunKey, shard: int | None = None) -> dict[tuple[int, int], BatchEntry]:
        """(shard, batch_no) -> entry, for one shard or the whole run."""
        query = sa.select(batches).where(key.where(batches))
        if shard is not None:
            query = query.where(batches.c.shard == shard)
        with self._reading() as db:
            fields = BatchEntry.__dataclass_fields__
            return {(row["shard"], row["batch_no"]): BatchEntry(**{n: row[n] for n in fields})
                    for row in db.execute(query).mappings()}

    def record_batch(self, key: RunKey, entry: BatchEntry,
                     accepted: Iterable[tuple[str, str]] = (),
                     accepted_groups: Iterable[tuple[str, str]] = ()) -> None:
        """The batch's ledger entry and, in the same transaction, the users whose messages
        Segment ``accepted`` (``(user_id, message_id)``, or ``(user_id, message_id,
        trait_mask, content)``; their group calls in ``accepted_groups``), appended to the
        state's delta (``fold_user_state`` moves them into ``sync_user_state``)."""
        at = now()
        values = {**entry.__dict__, "finished_at": at}
        match = sa.and_(key.where(batches), batches.c.shard == entry.shard,
                        batches.c.batch_no == entry.batch_no)
        # One row per user (the last wins). Bound values go to the driver as tuples: the
        # per-row work of a Core executemany was most of the cost of a batch (bench/).
        stamp = self._accepted_at(at)
        rows = [(scope, user_id, message_id, message_id.rsplit("-", 1)[-1], stamp,
                 key.run_id, entry.shard, entry.batch_no, *(*rest, None, None)[:2])
                for scope, items in ((key.dag_id, accepted),
                                     (group_scope(key.dag_id), accepted_groups))
                for user_id, message_id, *rest in {item[0]: item for item in items}.values()]
        with self._writing() as db:
            if db.execute(batches.update().where(match).values(**values)).rowcount == 0:
                db.execute(batches.insert().values(dag_id=key.dag_id, run_id=key.run_id, **values))
            if rows and self._append_delta is not None:
                db.exec_driver_sql(self._append_delta, rows)
            elif rows:  # a driver with named placeholders
                db.execute(user_state_delta.insert(), [dict(zip(_DELTA_COLUMNS, row, strict=True))
                                                       for row in rows])

    def fold_user_state(self, dag_id: str) -> int:
        """Move the DAG's accepted users (and group calls) from the delta into
        ``sync_user_state``, sorted by user (a user's latest acceptance wins); returns how
        many rows moved. A load calls it when its shard ends and before it plans one (a load
        that failed leaves its accepted batches in the delta, where ``accepted_message_ids``
        still finds them)."""
        return self._fold(dag_id) + self._fold(group_scope(dag_id))

    def _fold(self, dag_id: str) -> int:
        """``fold_user_state`` of one scope, in one transaction."""
        with self._writing() as db:
            top = db.scalar(sa.select(sa.func.max(user_state_delta.c.seq))
                            .where(user_state_delta.c.dag_id == dag_id))
            if top is None:
                return 0
            mine = sa.and_(user_state_delta.c.dag_id == dag_id, user_state_delta.c.seq <= top)
            delta = user_state_delta.c
            source = sa.select(*(delta[name] for name in _STATE_COLUMNS)).where(mine)
            dialect = self.engine.dialect.name
            if dialect == "postgresql":  # one row per user, or ON CONFLICT refuses the statement
                db.execute(_upsert(postgresql.insert, source.distinct(delta.user_id).order_by(
                    delta.user_id, delta.seq.desc())))
            elif dialect == "sqlite":  # SQLite applies the rows in order: a user's latest last
                db.execute(_upsert(sqlite.insert, source.order_by(delta.user_id, delta.seq)))
            else:
                _replace_latest(db, dag_id, source.order_by(delta.seq))
            return db.execute(user_state_delta.delete().where(mine)).rowcount

    def _accepted_at(self, at: datetime) -> object:
        """``at`` as the driver takes it for ``accepted_at`` (SQLite: SQLAlchemy's text)."""
        dialect = self.engine.dialect
        process = user_state_delta.c.accepted_at.type.dialect_impl(dialect).bind_processor(
            dialect)
        return process(at) if process is not None else at

    def ensure_writable(self) -> None:
        """Takes the write lock once and lets it go: a store that is locked or read-only
        fails here, before anything is sent, not after Segment has accepted a batch. (SQLite
        in write-ahead-log mode lets readers past another's exclusive lock: it shows here.)"""
        with self._writing() as db:
            try:
                db.execute(schema_version.update().where(schema_version.c.version < 0)
                           .values(version=schema_version.c.version))
            except SQLAlchemyError as exc:
                raise SyncError(
                    f"audit store {self.url} is unavailable: {_reason(exc)}") from None

    def clear_ledger(self, key: RunKey, shard: int) -> None:
        with self._writing() as db:
            db.execute(batches.delete().where(key.where(batches), batches.c.shard == shard))

    def accepted_message_ids(self, dag_id: str, user_ids: list[str],
                             group: bool = False) -> dict[str, str]:
        """userId -> messageId of the last identify (``group``: group call) Segment accepted,
        for those it has."""
        return {user_id: message_id for user_id, (message_id, _) in self.accepted_heads(
            dag_id, user_ids, group).items()}

    def accepted_heads(self, dag_id: str, user_ids: list[str],
                       group: bool = False) -> dict[str, tuple[str, int | None]]:
        """userId -> (messageId, trait mask) of the last identify (``group``: group call)
        Segment accepted, for those it has (the mask is None for a message accepted before
        the state kept it)."""
        if group:
            dag_id = group_scope(dag_id)
        # One expanding parameter for the ids: building the IN list one bound value at a time
        # cost more than the query itself (bench/). Sorted, the lookups walk the index in order.
        found: dict[str, str] = {}
        with self._reading() as db:
            for chunk in chunks(sorted(user_ids), 500):
                found.update((user_id, (message_id, mask)) for user_id, message_id, mask in
                             db.execute(self._accepted_query, {"dag_id": dag_id,
                                                               "user_ids": chunk}))
            # Accepted but not folded yet (a load that failed, or one beside this one): newer.
            if db.scalar(sa.select(user_state_delta.c.seq)
                         .where(user_state_delta.c.dag_id == dag_id).limit(1)) is not None:
                for chunk in chunks(user_ids, 500):
                    found.update((user_id, (message_id, mask)) for user_id, message_id, mask in
                                 db.execute(self._delta_query, {"dag_id": dag_id,
                                                                "user_ids": chunk}))
        return found

    def accepted_content(self, dag_id: str,
                         user_ids: list[str]) -> dict[str, tuple[datetime, bytes | None]]:
        """userId -> (when Segment accepted it, its kept content or None) of the last
        identify Segment accepted, for those it has (the delta's newer rows win)."""
        found: dict[str, tuple[datetime, bytes | None]] = {}
        with self._reading() as db:
            for table, order in ((user_state, user_state.c.user_id),
                                 (user_state_delta, user_state_delta.c.seq)):
                query = sa.select(table.c.user_id, table.c.accepted_at, table.c.content).where(
                    table.c.dag_id == dag_id,
                    table.c.user_id.in_(sa.bindparam("user_ids", expanding=True))
                ).order_by(order)
                for chunk in chunks(sorted(user_ids), 500):
                    found.update((user_id, (_as_utc(at), content)) for user_id, at, content
                                 in db.execute(query, {"user_ids": chunk}))
        return found

    def purge_content(self, dag_id: str, before: datetime, *, at: datetime | None = None) -> int:
        """Forget the kept content of the DAG's messages Segment accepted before ``before``
        (``MOESIF_SEGMENT_CONTENT_RETENTION``); returns how many were forgotten. The purge
        reads every row of the DAG's state (9 s at ten million users), so it runs when the
        last one is ``PURGE_EVERY`` old or more, and otherwise returns 0 at once."""
        at = at or now()
        purged = 0
        with self._writing() as db:
            last = db.scalar(sa.select(content_purges.c.purged_at).where(
                content_purges.c.dag_id == dag_id))
            if last is not None and at - _as_utc(last) < PURGE_EVERY:
                return 0
            for table in (user_state, user_state_delta):
                purged += db.execute(table.update().where(
                    table.c.dag_id == dag_id, table.c.accepted_at < before,
                    table.c.content.is_not(None)).values(content=None)).rowcount
            db.execute(content_purges.delete().where(content_purges.c.dag_id == dag_id))
            db.execute(content_purges.insert().values(dag_id=dag_id, purged_at=at))
        return purged

    # ---------------------------------------------------------------- runs and rejects

    def record_run(self, key: RunKey, **values: Any) -> None:
        with self._writing() as db:
            if db.execute(runs.update().where(key.where(runs)).values(**values)).rowcount == 0:
                db.execute(runs.insert().values(dag_id=key.dag_id, run_id=key.run_id, **values))

    def replace_rejects(self, key: RunKey, rows: Iterable[dict]) -> int:
        """The run's rejects, replacing any a previous attempt of the audit wrote."""
        written = 0
        with self._writing() as db:
            db.execute(rejects.delete().where(key.where(rejects)))
            chunk: list[dict] = []
            for row in rows:
                chunk.append({"dag_id": key.dag_id, "run_id": key.run_id, "seq": written,
                              **{name: storable(value) for name, value in row.items()}})
                written += 1
                if len(chunk) >= 1000:
                    db.execute(rejects.insert(), chunk)
                    chunk = []
            if chunk:
                db.execute(rejects.insert(), chunk)
        return written

    def run(self, key: RunKey) -> dict | None:
        with self._reading() as db:
            row = db.execute(sa.select(runs).where(key.where(runs))).mappings().first()
            return dict(row) if row else None

    def latest_runs(self, dag_id: str, *, limit: int = 20) -> list[dict]:
        """The newest runs first, by when they finished."""
        with self._reading() as db:
            query = (sa.select(runs).where(runs.c.dag_id == dag_id)
                     .order_by(runs.c.finished_at.desc(), runs.c.run_id.desc()).limit(limit))
            return [dict(row) for row in db.execute(query).mappings()]

    def rejects(self, key: RunKey) -> list[dict]:
        with self._reading() as db:
            query = sa.select(rejects).where(key.where(rejects)).order_by(rejects.c.seq)
            return [dict(row) for row in db.execute(query).mappings()]

    def rejected_user_ids(self, key: RunKey) -> list[str]:
        """The ids of the users a run rejected, or whose group call Segment refused: what a
        retry of its rejects reads again (a reject without an id cannot be read again)."""
        with self._reading() as db:
            query = sa.select(rejects.c.entity_id).distinct().where(
                key.where(rejects), rejects.c.entity.in_(("user", "group")),
                rejects.c.entity_id.is_not(None), rejects.c.entity_id != "")
            return sorted(db.execute(query).scalars())

    # ---------------------------------------------------------------- plumbing

    def _reading(self):  # noqa: ANN202 - a context manager from SQLAlchemy
        return _Guard(self, self.engine.connect)

    def _writing(self):  # noqa: ANN202
        return _Guard(self, self.engine.begin)


class _Guard:
    """Turns a database failure into a ``SyncError`` naming the store, never its password."""

    def __init__(self, store: AuditStore, open_: Any) -> None:
        self._store, self._open, self._cm = store, open_, None

    def __enter__(self) -> sa.Connection:
        try:
            self._cm = self._open()
            return self._cm.__enter__()
        except SQLAlchemyError as exc:
            raise SyncError(
                f"audit store {self._store.url} is unavailable: {_reason(exc)}") from None

    def __exit__(self, *exc_info: Any) -> bool:
        try:
            self._cm.__exit__(*exc_info)
        except SQLAlchemyError as exc:
            raise SyncError(
                f"audit store {self._store.url} failed to write: {_reason(exc)}") from None
        if isinstance(exc_info[1], SQLAlchemyError):
            raise SyncError(f"audit store {self._store.url} failed: "
                            f"{_reason(exc_info[1])}") from None
        return False


def _sqlite_write_ahead_log(connection: Any, _record: Any) -> None:
    """SQLite in write-ahead-log mode, syncing at checkpoints rather than at every commit: a
    load commits once per batch, and each commit's fsyncs in the default rollback-journal
    mode cost as much as the batch's rows (bench/). A commit stays atomic and durable
    against a crashed process; an OS crash or power cut may lose the last commits, which
    a load redoes (their batches are sent again with the same messageIds)."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _lookup(table: sa.Table, order: sa.ColumnElement) -> sa.Select:
    """(user_id, message_id, traits_mask) of a DAG's users among ``:user_ids``, in
    ``order``."""
    return sa.select(table.c.user_id, table.c.message_id, table.c.traits_mask).where(
        table.c.dag_id == sa.bindparam("dag_id"),
        table.c.user_id.in_(sa.bindparam("user_ids", expanding=True))).order_by(order)


def _insert_text(table: sa.Table, dialect: sa.Dialect) -> str | None:
    """``INSERT`` of the delta's columns in the driver's positional placeholders, for
    ``exec_driver_sql`` with tuples; None for a driver with named ones."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if mark is None:
        return None
    return (f"INSERT INTO {table.name} ({', '.join(_DELTA_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_DELTA_COLUMNS))})")


def _upsert(insert: Any, source: sa.Select) -> sa.Executable:
    """``INSERT INTO sync_user_state SELECT … ON CONFLICT (dag_id, user_id) DO UPDATE`` of
    every other column (SQLite and PostgreSQL)."""
    statement = insert(user_state).from_select(_STATE_COLUMNS, source)
    keys = [column.name for column in user_state.primary_key]
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name]
                                   for name in _STATE_COLUMNS if name not in keys})


def _replace_latest(db: sa.Connection, dag_id: str, source: sa.Select) -> None:
    """The fold for a database without ``ON CONFLICT``: each user's latest row replaces
    its state, 500 users a statement."""
    latest = {row["user_id"]: dict(row) for row in db.execute(source).mappings()}
    for chunk in chunks(list(latest.values()), 500):
        db.execute(user_state.delete().where(
            user_state.c.dag_id == dag_id,
            user_state.c.user_id.in_([row["user_id"] for row in chunk])))
        db.execute(user_state.insert(), chunk)


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def storable(value: object) -> object:
    """Text any database keeps: lone surrogates and NUL (refused by PostgreSQL and by UTF-8)
    written as escapes. Only for what is shown; the staged files keep the exact record."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _engine_options(url: str, lock_timeout: float) -> dict:
    if url.startswith("sqlite"):
        # Waits out a short lock from another task instead of failing at once.
        return {"connect_args": {"timeout": lock_timeout}}
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True,
                "connect_args": {"options": f"-c lock_timeout={int(lock_timeout * 1000)}"}}
    return {"pool_pre_ping": True}


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "(unparseable URL)"


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def check_accounting(*, considered: int, sent: int, would_send: int, unchanged: int,
                     rejected: int, dry_run: bool, what: str = "") -> None:
    """``considered = sent + unchanged + rejected`` (dry run: ``would send`` for ``sent``);
    ``what`` names what is counted when it is not the users (group calls)."""
    delivered = would_send if dry_run else sent
    other = sent if dry_run else would_send
    name = "would_send" if dry_run else "sent"
    of = f" of {what}" if what else ""
    if other:
        raise AccountingError(
            f"accounting{of}: a {'dry' if dry_run else 'real'} run must not count "
            f"{'sent' if dry_run else 'would_send'} messages, found {other}")
    if considered != delivered + unchanged + rejected:
        raise AccountingError(
            f"accounting{of} does not add up: considered {considered} != {name} {delivered} + "
            f"unchanged {unchanged} + rejected {rejected} "
            f"({considered - delivered - unchanged - rejected:+d} unaccounted)")
