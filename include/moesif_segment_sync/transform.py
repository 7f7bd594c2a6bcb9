"""Transform: join each user's company onto the user and build the identify messages.

Companies are the small side: they are mapped once each and held in a
pandas DataFrame. Users stream through in chunks, are joined onto the
companies with pandas, and are mapped one by one (trait-mapping.md); each
ends as a staged message or a staged reject with its reason.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

import orjson
import pandas as pd

from . import staging
from .fields import AS_INFERRED, FieldNames
from .mapping import (
    ALL_TRAITS,
    Identify,
    Rejected,
    RejectKind,
    TraitPolicy,
    Unreadable,
    company_traits,
    identify,
)
from .staging import JsonLinesWriter, Staging

USER_FILES = {staging.USERS: "window", staging.USERS_VIA_COMPANY: "company"}
COMPANY_FILES = (staging.COMPANIES, staging.USER_COMPANIES)


def transform(stage: Staging, *, default_timestamp: str, chunk_size: int,
              shard_size: int, fields: FieldNames = AS_INFERRED,
              policy: TraitPolicy = ALL_TRAITS) -> dict:
    """Stage messages (in shards of ``shard_size``) and rejects; return the counts the
    audit adds up and the number of shards."""
    started = time.monotonic()
    warnings: Counter = Counter()
    rejected: Counter = Counter()
    routes: Counter = Counter()
    seen_users: set[str] = set()
    considered = built = 0
    with ShardWriter(stage, shard_size) as messages, stage.writer(staging.REJECTS) as rejects:
        companies, companies_rejected = _companies(stage, rejects, warnings, fields)
        for file, route in USER_FILES.items():
            for chunk in staging.chunks(stage.lines(file), chunk_size):
                for record, lenient, company in _joined(chunk, companies):
                    considered += 1
                    routes[route] += 1
                    outcome = identify(fields.canonical("users", record), company,
                                       default_timestamp=default_timestamp,
                                       warnings=warnings, strict_json=lenient,
                                       policy=policy)
                    if isinstance(outcome, Identify) and outcome.user_id in seen_users:
                        outcome = Rejected(RejectKind.DUPLICATE, "an earlier record of this run "
                                           "has the same user_id", outcome.user_id)
                    if isinstance(outcome, Rejected):
                        rejected[outcome.kind.value] += 1
                        _reject(rejects, "user", outcome, record, lenient, file)
                        continue
                    seen_users.add(outcome.user_id)
                    messages.write_line(outcome.body, outcome.user_id, outcome.message_id)
                    built += 1
    return {
        # Names this transform's output, so a retried load can tell its own plan from a
        # plan made for an earlier transform of the same run.
        "transform_id": uuid.uuid4().hex,
        "considered": considered,
        "messages": built,
        "rejected": sum(rejected.values()),
        "rejected_by_kind": dict(sorted(rejected.items())),
        "warnings": {str(kind): n for kind, n in sorted(warnings.items())},
        "routes": dict(routes),
        "companies": len(companies),
        "companies_rejected": companies_rejected,
        "shards": messages.shards,
        "files": {"messages": stage.url(staging.messages_file(0)),
                  "rejects": stage.url(staging.REJECTS)},
        "seconds": round(time.monotonic() - started, 3),
    }


class ShardWriter:
    """Writes messages into shard files of at most ``size`` lines; always at least one shard,
    so that the mapped load has a task to run even when there is nothing to send. Beside each
    shard, its heads file: ``[userId, messageId]`` per message, so the load never parses one."""

    def __init__(self, stage: Staging, size: int) -> None:
        self._stage, self._size = stage, size
        self._stack = ExitStack()
        self._out: JsonLinesWriter | None = None
        self._heads: JsonLinesWriter | None = None
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
                self._stage.remove(staging.messages_file(number))
                self._stage.remove(staging.heads_file(number))
                number += 1
        return False

    def write_line(self, line: bytes, user_id: str, message_id: str) -> None:
        if self._out.lines >= self._size:
            self._next()
        self._out.write_line(line)
        self._heads.write_line(orjson.dumps([user_id, message_id]))

    def _next(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self._out = self._stack.enter_context(
            self._stage.writer(staging.messages_file(self.shards)))
        self._heads = self._stack.enter_context(
            self._stage.writer(staging.heads_file(self.shards)))
        self.shards += 1


def _companies(stage: Staging, rejects: JsonLinesWriter, warnings: Counter,
               fields: FieldNames) -> tuple[pd.DataFrame, int]:
    """Every staged company's traits, one row per company_id (the first staged wins)."""
    rows, rejected = [], 0
    for file in COMPANY_FILES:
        for line in stage.lines(file):
            record, lenient = _source(line)
            traits = company_traits(fields.canonical("companies", record), warnings)
            if isinstance(traits, Rejected):
                rejected += 1
                _reject(rejects, "company", traits, record, lenient, file)
            else:
                rows.append((traits["id"], traits, lenient))
    frame = pd.DataFrame(rows, columns=["company_id", "company", "company_lenient"],
                         dtype=object)
    return frame.drop_duplicates("company_id", keep="first"), rejected


def _joined(chunk: list[bytes], companies: pd.DataFrame) -> Iterator[tuple]:
    """(record, lenient, company traits or None) for each user line, in order."""
    parsed = [_source(line) for line in chunk]
    users = pd.DataFrame({
        "record": [record for record, _ in parsed],
        "lenient": [lenient for _, lenient in parsed],
        "company_id": [_company_key(record) for record, _ in parsed],
    }, dtype=object)
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
        hit, lenient = staging.loads(line)
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
    out.write({"entity": entity, "id": rejected.entity_id or _id_of(record, entity),
               "kind": rejected.kind.value, "reason": rejected.reason, "file": file,
               "record": record.text if isinstance(record, Unreadable) else record},
              lenient=lenient)


def _id_of(record: object, entity: str) -> str | None:
    value = record.get(f"{entity}_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None
