"""Correctness checks: the staged messages are the mapping's, and the stand-in got them all.

``check_identity`` runs before any load is timed. Whoever makes the
transform faster (another join, another parser, batched validation) must
not change a byte of what is sent. It takes a sample of the generated
users, straight from the files the Moesif stand-in serves, builds each one's
message with ``mapping.identify`` called directly (the unoptimised path: one
record, its company's ``company_traits``, no pandas, no staging), and
compares it byte for byte with what the transform staged. Users the
mapping rejects must not be staged at all. The benchmark runs on the default
settings (no field renames, no trait allow or deny list, no hashed fields),
so the direct call needs no options either.

``check_delivery`` compares what the Segment stand-in delivered with the
staged messages, message by message.
"""

from __future__ import annotations

import gc
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from moesif_segment_sync import codec
from moesif_segment_sync.codec import format_utc
from moesif_segment_sync.pipeline.mapping import Identify, Rejected, company_traits, identify
from moesif_segment_sync.pipeline.staging import Staging

from . import staged
from .config import WINDOW

_SHOWN_MISMATCHES = 5


def check_identity(users_file: Path, companies_file: Path, stage: Staging, *, n_users: int,
                   sample: int) -> dict[str, Any]:
    """Compare ``sample`` evenly spaced users of the ``n_users`` (all when there are fewer)."""
    with companies_file.open("rb") as lines:
        companies = _companies(codec.loads(line) for line in lines)
    return _compare(_sample(users_file, step=max(1, n_users // max(sample, 1))), companies,
                    stage)


def check_identity_store(store: Path, stage: Staging, *, n_users: int,
                         sample: int) -> dict[str, Any]:
    """``check_identity`` with the records read from the Moesif stand-in's store on disk.

    Only what the check needs is read, never the whole store (24 GB at ten million): the
    companies' rows, which lie together (a store's rows are in the sync's order, companies
    first), and each sampled user by its load order (``ord``, its line in a users file)."""
    step = max(1, n_users // max(sample, 1))
    with closing(sqlite3.connect(store.resolve().as_uri() + "?mode=ro", uri=True)) as db:
        first, last = db.execute("SELECT min(rowid), max(rowid) FROM docs "
                                 "WHERE collection = 'companies'").fetchone()
        companies = _companies(_sources(db.execute(
            "SELECT head FROM docs WHERE rowid BETWEEN ? AND ? AND collection = 'companies'",
            (first or 0, last or -1))))
        users = [db.execute("SELECT head FROM docs WHERE collection = 'users' AND ord = ?",
                            (ord_,)).fetchone() for ord_ in range(0, n_users, step)]
        return _compare(list(_sources(row for row in users if row)), companies, stage)


def _sources(rows: Iterable[tuple[bytes]]) -> Iterator[tuple[Any, bool]]:
    """(record, lenient) of each stored hit's head (``{"_id":…,"_source":…``)."""
    for head, in rows:
        hit, lenient = codec.loads(head + b"}")
        yield hit["_source"], lenient


def _compare(records: Iterable[tuple[Any, bool]], companies: dict[str, dict],
             stage: Staging) -> dict[str, Any]:
    default_timestamp = format_utc(WINDOW.end)
    expected: dict[str, bytes] = {}
    rejected: list[str] = []
    sampled = 0
    for record, lenient in records:
        sampled += 1
        company_id = record.get("company_id") if isinstance(record, dict) else None
        company = companies.get(company_id) if isinstance(company_id, str) else None
        outcome = identify(record, company, default_timestamp=default_timestamp,
                           warnings=Counter(), strict_json=lenient)
        if isinstance(outcome, Identify):
            expected[outcome.user_id] = outcome.body
        elif outcome.entity_id is not None:
            rejected.append(outcome.entity_id)

    staged = _staged_by_user(stage, set(expected) | set(rejected))
    mismatched = [user_id for user_id, body in expected.items() if staged.get(user_id) != body]
    wrongly_sent = [user_id for user_id in rejected if user_id in staged]
    return {
        "sampled": sampled,
        "identical": len(expected) - len(mismatched),
        "rejected_as_expected": sampled - len(expected),
        "mismatched": mismatched[:_SHOWN_MISMATCHES],
        "n_mismatched": len(mismatched),
        "rejected_but_staged": wrongly_sent[:_SHOWN_MISMATCHES],
        "passed": not mismatched and not wrongly_sent and len(expected) > 0,
    }


def _companies(records: Iterable[tuple[Any, bool]]) -> dict[str, dict]:
    """company_id -> traits.company, the first record of an id winning (as in the transform)."""
    found: dict[str, dict] = {}
    for record, _ in records:
        company_id = record.get("company_id") if isinstance(record, dict) else None
        if not isinstance(company_id, str) or company_id in found:
            continue
        traits = company_traits(record, Counter())
        if not isinstance(traits, Rejected):
            found[company_id] = traits
    return found


def _sample(path: Path, step: int):  # noqa: ANN202 - a generator of (record, lenient)
    with path.open("rb") as lines:
        for number, line in enumerate(lines):
            if number % step == 0:
                yield codec.loads(line)


def _staged_by_user(stage: Staging, user_ids: set[str]) -> dict[str, bytes]:
    """The staged message of each of ``user_ids`` (found by the heads: no message parsed)."""
    return {user_id: line for user_id, line in staged.messages_by_user(stage)
            if user_id in user_ids}


def check_delivery(delivered_body: bytes, stage: Staging) -> dict[str, Any]:
    """Every staged message delivered, equal to what was staged, and nothing else."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        delivered = {message["messageId"]: message for message in orjson.loads(delivered_body)}
        checked = missing = different = 0
        for line in staged.messages(stage):
            message = orjson.loads(line)
            checked += 1
            got = delivered.pop(message["messageId"], None)
            if got is None:
                missing += 1
            elif got != message:
                different += 1
    finally:
        if was_enabled:
            gc.enable()
    return {"mode": "every message", "checked": checked, "missing": missing,
            "different": different,
            "unexpected": len(delivered),
            "passed": checked > 0 and not (missing or different or delivered)}
