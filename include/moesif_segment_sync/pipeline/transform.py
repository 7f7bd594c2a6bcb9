"""Transform: join each user's company onto the user and build the identify messages.

Companies are mapped once each and kept on disk (``scratch``), with the ids
of the users already built, so memory does not grow with the run. Users
stream through in chunks: each chunk is joined onto its companies with
pandas and mapped user by user (trait-mapping.md); each user ends as a
staged message or a staged reject with its reason.

Mapping is the transform's CPU work. A run of more than a few chunks maps
them in worker processes (``transform_workers``, one per core by default),
in order; this process reads, de-duplicates and writes, so the staged files
are byte for byte those of mapping in one process.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain, islice
from typing import NamedTuple

import pandas as pd

from .. import codec
from ..chunking import chunks
from ..moesif import AS_INFERRED, FieldNames
from ..progress import Progress
from ..summaries import Built
from . import staging
from .mapping import (
    ALL_TRAITS,
    Message,
    Rejected,
    RejectKind,
    TraitPolicy,
    Unreadable,
    company_traits,
    identify,
)
from .scratch import CompanyReader, Scratch
from .staging import JsonLinesWriter, Staging

log = logging.getLogger(__name__)

USER_FILES = {staging.USERS: "window", staging.USERS_VIA_COMPANY: "company"}
COMPANY_FILES = (staging.COMPANIES, staging.USER_COMPANIES)
_DUPLICATE = "an earlier record of this run has the same user_id"
# Worker processes start only for a file of at least this many chunks: starting them costs
# about a second, mapping a chunk of 5,000 users a tenth of that.
_CHUNKS_BEFORE_WORKERS = 4
_MOST_WORKERS = 8


def transform(stage: Staging, *, default_timestamp: str, chunk_size: int,
              shard_size: int, fields: FieldNames = AS_INFERRED,
              policy: TraitPolicy = ALL_TRAITS, workers: int = 1,
              progress_seconds: float = 5.0, group_calls: bool = False) -> Built:
    """Stage messages (in shards of ``shard_size``) and rejects; return the counts the
    audit adds up and the number of shards. ``workers`` processes map the users (0: one
    per core). ``group_calls`` also stages each user's group call beside its identify."""
    started = time.monotonic()
    warnings: Counter = Counter()
    rejected: Counter = Counter()
    routes: Counter = Counter()
    considered = built = groups = 0
    with Scratch() as scratch, ShardWriter(stage, shard_size) as messages, \
            stage.writer(staging.REJECTS) as rejects:
        companies_rejected = _stage_companies(stage, scratch, rejects, warnings, fields)
        spec = MapSpec(scratch.companies_path, default_timestamp, fields, policy, group_calls)
        progress = Progress(log, "transform", "users", every=progress_seconds)
        with ChunkMappers(spec, workers) as mappers:
            for file, route in USER_FILES.items():
                for lines, mapped in mappers.map(file, chunks(stage.lines(file), chunk_size)):
                    warnings.update(mapped.warnings)
                    considered += len(lines)
                    progress.advance(len(lines), f"{built:,} messages built")
                    routes[route] += len(lines)
                    for user_id, message_id, mask, line, kind, group in _without_repeats(
                            lines, mapped, scratch, file):
                        if kind is None:
                            messages.write_line(line, user_id, message_id, mask)
                            built += 1
                            if group is not None:
                                messages.write_group(group)
                                groups += 1
                        else:
                            rejected[kind] += 1
                            rejects.write_line(line)
    progress.finish(f"{built:,} messages built, {sum(rejected.values()):,} rejected")
    return Built(
        transform_id=uuid.uuid4().hex, considered=considered, messages=built, groups=groups,
        rejected=sum(rejected.values()), rejected_by_kind=dict(sorted(rejected.items())),
        warnings={str(kind): n for kind, n in sorted(warnings.items())}, routes=dict(routes),
        companies=scratch.companies, companies_rejected=companies_rejected,
        shards=messages.shards, workers=mappers.used,
        files={"messages": stage.url(staging.messages_file(0)),
               "rejects": stage.url(staging.REJECTS)},
        seconds=round(time.monotonic() - started, 3))


def _without_repeats(lines: list[bytes], mapped: MappedChunk, scratch: Scratch, file: str
                     ) -> Iterator[tuple[str | None, str | None, int | None, bytes, str | None,
                                         Message | None]]:
    """A chunk's (user_id, message_id, trait mask, line, reject kind, group call) in order,
    where a user built earlier in the run (or earlier in the chunk) is sent once: the repeat
    becomes a ``duplicate`` reject (without its group call)."""
    seen = scratch.built_before(user_id for user_id in mapped.user_ids if user_id is not None)
    built_now = []
    for source, outcome in zip(lines, zip(mapped.user_ids, mapped.message_ids, mapped.masks,
                                          mapped.lines, mapped.kinds, mapped.groups,
                                          strict=True), strict=True):
        user_id = outcome[0]
        if user_id is not None:
            if user_id in seen:
                # Rare: read the line again for the reject's record.
                record, lenient, _ = next(_joined([source], scratch))
                duplicate = Rejected(RejectKind.DUPLICATE, _DUPLICATE, user_id)
                outcome = (None, None, None,
                           _reject_line("user", duplicate, record, lenient, file),
                           duplicate.kind.value, None)
            else:
                seen.add(user_id)
                built_now.append(user_id)
        yield outcome
    scratch.record_built(built_now)


# ---------------------------------------------------------------- mapping chunks

@dataclass(frozen=True)
class MapSpec:
    """Everything mapping a chunk needs besides its lines (sent to each worker process)."""

    companies_path: str
    default_timestamp: str
    fields: FieldNames
    policy: TraitPolicy
    group_calls: bool = False


class MappedChunk(NamedTuple):
    """A chunk's outcomes in order, as columns (which cross between processes cheaply): a
    built user has its user_id, message_id, trait mask, message line, no kind and its group
    call (or None); a rejected one no ids, its reject line, its reject kind and no group
    call."""

    user_ids: list[str | None]
    message_ids: list[str | None]
    masks: list[int | None]
    lines: list[bytes]
    kinds: list[str | None]
    groups: list[Message | None]
    warnings: Counter


class ChunkMapper:
    """Maps one chunk of staged user lines (``MappedChunk``)."""

    def __init__(self, spec: MapSpec) -> None:
        self._spec = spec
        self._companies = CompanyReader(spec.companies_path)

    def __call__(self, file: str, lines: list[bytes]) -> MappedChunk:
        spec = self._spec
        mapped = MappedChunk([], [], [], [], [], [], Counter())
        for record, lenient, company in _joined(lines, self._companies):
            outcome = identify(spec.fields.canonical("users", record), company,
                               default_timestamp=spec.default_timestamp,
                               warnings=mapped.warnings, strict_json=lenient, policy=spec.policy,
                               group_calls=spec.group_calls)
            if isinstance(outcome, Rejected):
                mapped.user_ids.append(None)
                mapped.message_ids.append(None)
                mapped.masks.append(None)
                mapped.lines.append(_reject_line("user", outcome, record, lenient, file))
                mapped.kinds.append(outcome.kind.value)
                mapped.groups.append(None)
            else:
                mapped.user_ids.append(outcome.user_id)
                mapped.message_ids.append(outcome.message_id)
                mapped.masks.append(outcome.trait_mask)
                mapped.lines.append(outcome.body)
                mapped.kinds.append(None)
                mapped.groups.append(outcome.group)
        return mapped


class ChunkMappers:
    """Maps chunks in this process, or in worker processes once a file has enough chunks to
    be worth starting them; either way the results come back in the chunks' order."""

    def __init__(self, spec: MapSpec, workers: int) -> None:
        self._spec = spec
        self.workers = workers or min(os.cpu_count() or 1, _MOST_WORKERS)
        self._local: ChunkMapper | None = None
        self._pool: Executor | None = None

    def __enter__(self) -> ChunkMappers:
        return self

    @property
    def used(self) -> int:
        """Processes that mapped users: the workers, once started; else this one."""
        return self.workers if self._pool is not None else 1

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def map(self, file: str,
            chunks: Iterable[list[bytes]]) -> Iterator[tuple[list[bytes], MappedChunk]]:
        """(lines, their ``MappedChunk``) for each chunk, in order."""
        chunks = iter(chunks)
        first = list(islice(chunks, _CHUNKS_BEFORE_WORKERS))
        chunks = chain(first, chunks)
        pool = self._started_pool() if len(first) == _CHUNKS_BEFORE_WORKERS else None
        if pool is None:
            if self._local is None:
                self._local = ChunkMapper(self._spec)
            yield from ((lines, self._local(file, lines)) for lines in chunks)
            return
        pending: deque = deque()
        for lines in chunks:
            pending.append((lines, pool.submit(_map_in_worker, file, lines)))
            if len(pending) > 2 * self.workers:  # a bounded number of chunks in flight
                lines, future = pending.popleft()
                yield lines, future.result()
        while pending:
            lines, future = pending.popleft()
            yield lines, future.result()

    def _started_pool(self) -> Executor | None:
        if self.workers < 2:
            return None
        if self._pool is None:
            # spawn, not fork: the task's process may hold threads (Airflow's own) whose locks
            # a forked child would inherit taken.
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(
                "spawn"), initializer=_start_worker, initargs=(self._spec,))
            try:
                pool.submit(_ready).result()
            except (BrokenProcessPool, AssertionError, OSError) as exc:
                # A daemonic process (some executors run tasks in one) may not have children.
                log.warning("mapping users in this process: cannot start worker processes "
                            "(%s)", exc)
                pool.shutdown(cancel_futures=True)
                self.workers = 1
                return None
            log.info("mapping users in %d worker processes", self.workers)
            self._pool = pool
        return self._pool


_worker: ChunkMapper | None = None


def _start_worker(spec: MapSpec) -> None:
    global _worker
    gc.disable()  # parsed JSON has no cycles (sync._stage says why this pays)
    _worker = ChunkMapper(spec)


def _ready() -> bool:
    return True


def _map_in_worker(file: str, lines: list[bytes]) -> MappedChunk:
    return _worker(file, lines)


class ShardWriter:
    """Writes messages into shard files of at most ``size`` lines; always at least one shard,
    so that the mapped load has a task to run even when there is nothing to send. Beside each
    shard, its heads file: ``[userId, messageId, trait mask]`` per message, so the load never
    parses one;
    and, when there are group calls, the group calls of the shard's users with their heads
    (``staging.groups_file``), opened at the first one."""

    def __init__(self, stage: Staging, size: int) -> None:
        self._stage, self._size = stage, size
        self._stack = ExitStack()
        self._out: JsonLinesWriter | None = None
        self._heads: JsonLinesWriter | None = None
        self._groups: tuple[JsonLinesWriter, JsonLinesWriter] | None = None
        self.shards = 0

    def __enter__(self) -> ShardWriter:
        self._next()
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self._stack.__exit__(*exc_info)
        if exc_info[0] is None:
            # Shards of an earlier attempt beyond this one's count are not this run's.
            number = self.shards
            while self._stage.exists(staging.messages_file(number)):
                for name in staging.shard_files(number):
                    self._stage.remove(name)
                number += 1
        return False

    def write_line(self, line: bytes, user_id: str, message_id: str, trait_mask: int) -> None:
        if self._out.lines >= self._size:
            self._next()
        self._out.write_line(line)
        self._heads.write_line(staging.head_line(user_id, message_id, trait_mask))

    def write_group(self, group: Message) -> None:
        """The group call of the user written last, in the same shard."""
        if self._groups is None:
            shard = self.shards - 1
            self._groups = (
                self._stack.enter_context(self._stage.writer(staging.groups_file(shard))),
                self._stack.enter_context(self._stage.writer(staging.group_heads_file(shard))))
        out, heads = self._groups
        out.write_line(group.body)
        heads.write_line(staging.head_line(group.user_id, group.message_id))

    def _next(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self._groups = None
        # A shard without group calls has no group files, not an earlier attempt's.
        self._stage.remove(staging.groups_file(self.shards))
        self._stage.remove(staging.group_heads_file(self.shards))
        self._out = self._stack.enter_context(
            self._stage.writer(staging.messages_file(self.shards)))
        self._heads = self._stack.enter_context(
            self._stage.writer(staging.heads_file(self.shards)))
        self.shards += 1


def _stage_companies(stage: Staging, scratch: Scratch, rejects: JsonLinesWriter,
                     warnings: Counter, fields: FieldNames) -> int:
    """Map every staged company once into the scratch table (the first staged of an id
    wins); return how many were rejected."""
    rejected = 0

    def mapped() -> Iterator[tuple[str, bytes, bool]]:
        nonlocal rejected
        for file in COMPANY_FILES:
            for line in stage.lines(file):
                record, lenient = _source(line)
                traits = company_traits(fields.canonical("companies", record), warnings)
                if isinstance(traits, Rejected):
                    rejected += 1
                    _reject(rejects, "company", traits, record, lenient, file)
                else:
                    yield traits["id"], codec.dumps(traits, lenient=lenient), lenient

    scratch.add_companies(mapped())
    return rejected


def _joined(chunk: list[bytes], companies: Scratch | CompanyReader) -> Iterator[tuple]:
    """(record, lenient, company traits or None) for each user line, in order."""
    parsed = [_source(line) for line in chunk]
    users = pd.DataFrame({
        "record": [record for record, _ in parsed],
        "lenient": [lenient for _, lenient in parsed],
        "company_id": [_company_key(record) for record, _ in parsed],
    }, dtype=object)
    companies = pd.DataFrame(
        [(company_id, codec.loads(line)[0], lenient) for company_id, line, lenient
         in companies.company_lines(users["company_id"].dropna().unique())],
        columns=["company_id", "company", "company_lenient"], dtype=object)
    joined = users.merge(companies, on="company_id", how="left", sort=False)
    for record, lenient, company, company_lenient in zip(
            joined["record"], joined["lenient"], joined["company"], joined["company_lenient"],
            strict=True):
        # A company only the lenient parser could read (NaN, say) makes its users' messages
        # go through the strict serializer too, which refuses what JSON cannot carry.
        yield (record, lenient or company_lenient is True,
               company if isinstance(company, dict) else None)


def _source(line: bytes) -> tuple[object, bool]:
    """A staged hit's ``_source``; a hit without one is itself the (bad) record."""
    try:
        hit, lenient = codec.loads(line)
    except RecursionError:
        return Unreadable(line.decode("utf-8", "replace")), True
    if isinstance(hit, dict) and "_source" in hit:
        return hit["_source"], lenient
    return hit, lenient


def _company_key(record: object) -> str | None:
    value = record.get("company_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def _reject(out: JsonLinesWriter, entity: str, rejected: Rejected, record: object,
            lenient: bool, file: str) -> None:
    out.write_line(_reject_line(entity, rejected, record, lenient, file))


def _reject_line(entity: str, rejected: Rejected, record: object, lenient: bool,
                 file: str) -> bytes:
    return codec.dumps({
        "entity": entity, "id": rejected.entity_id or _id_of(record, entity),
        "kind": rejected.kind.value, "reason": rejected.reason, "file": file,
        "record": record.text if isinstance(record, Unreadable) else record}, lenient=lenient)


def _id_of(record: object, entity: str) -> str | None:
    value = record.get(f"{entity}_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None
