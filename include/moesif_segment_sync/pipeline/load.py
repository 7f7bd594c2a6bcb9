"""Load one shard: plan what Segment lacks, pack it, send it, and keep the ledger.

First a plan (``plan``): each built message whose messageId is the last one Segment
accepted for that user is ``unchanged`` (unless ``force``); the rest are to send. A retried
load finds its plan (same transform, same flags) and skips the batches the ledger holds as
sent, so it resumes where it stopped and ends with the same counts. A dry run plans and
packs, records the batches as ``dry_run``, stages its diff preview (``diff``) and sends
nothing.

A shard's messages are its identify messages and then, with MOESIF_SEGMENT_GROUP_CALLS, its
group calls, counted apart. With MOESIF_SEGMENT_REMOVED_TRAITS=null the plan marks the
identify messages that lost traits, and they are sent with those traits as null.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from ..errors import SegmentError, SyncError
from ..progress import Progress
from ..segment import ENVELOPE_BYTES, Batch, RateLimiter, SegmentSender, pack
from ..settings import SyncSettings
from ..store import AuditStore, BatchEntry, RunKey
from . import diff, plan, staging
from .mapping import is_group
from .staging import Staging

log = logging.getLogger(__name__)

# Segment's answers to a batch it refuses as invalid: 400 (a message it cannot take) and 413
# (too large). The batch is split to find the messages; any other refusal fails the load.
SPLITTABLE = frozenset({400, 413})


@dataclass(frozen=True)
class ShardLoad:
    """Which shard of which run to load, and how."""

    key: RunKey
    stage: Staging
    settings: SyncSettings
    shard: int
    transform_id: str
    force: bool
    dry_run: bool


@dataclass
class Totals:
    """Identify messages, and group calls apart (``group_*``), by what became of them."""

    batches: int = 0
    sent: int = 0
    refused: int = 0  # messages Segment refused one by one: rejects of kind segment_refused
    would_send: int = 0
    group_sent: int = 0
    group_refused: int = 0
    group_would_send: int = 0
    resumed_batches: int = 0
    attempts: int = 0
    bytes: int = 0
    diff: dict[str, Any] = field(default_factory=dict)  # a dry run's diff.Preview.summary

    def add(self, ids: list[tuple[str, str]], outcome: str) -> None:
        """Count the messages ``ids`` as ``outcome`` (sent, refused or would_send)."""
        groups = sum(is_group(message_id) for _, message_id in ids)
        self.count(len(ids) - groups, groups, outcome)

    def count(self, identifies: int, groups: int, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + identifies)
        setattr(self, f"group_{outcome}", getattr(self, f"group_{outcome}") + groups)


def _accepted_rows(batch: Batch, positions: Iterable[int] | None = None, *,
                   keep_content: bool) -> tuple[list, list]:
    """The messages of ``batch`` at ``positions`` (all by default) as ``record_batch`` takes
    them: identify messages with their trait mask and, when ``keep_content``, their packed
    bytes (``diff.pack``); then group calls."""
    heads = batch.parsed_heads()
    identifies, groups = [], []
    for position in range(batch.count) if positions is None else positions:
        head = heads[position]
        if is_group(head[1]):
            groups.append((head[0], head[1]))
        else:
            identifies.append((head[0], head[1], head[2] if len(head) > 2 else None,
                               diff.pack(batch.messages[position]) if keep_content else None))
    return identifies, groups


def load_shard(job: ShardLoad, store: AuditStore, sender: SegmentSender | None
               ) -> tuple[plan.Plan, Totals]:
    """Plan the shard and send its batches (none when ``sender`` is None: a dry run)."""
    if sender is None and not job.dry_run:
        raise SyncError("load needs the Segment connection unless dry_run is set")
    # Users accepted by a load that stopped before the end of its shard join the state first.
    store.fold_user_state(job.key.dag_id)
    shard_plan = _plan(job, store)
    ledger = store.ledger(job.key, job.shard)
    totals = Totals()
    progress = Progress(log, f"load shard {job.shard}", "messages",
                        total=shard_plan.to_send + shard_plan.groups_to_send,
                        every=job.settings.progress_seconds)
    # A dry run writes its diff preview; a real run sends.
    diff_file = (job.stage.writer(staging.diff_file(job.shard)) if sender is None
                 else contextlib.nullcontext())
    with _OneInFlight(job, store, sender, totals, progress) as flight, diff_file as diff_out:
        preview = None if diff_out is None else diff.Preview(
            diff_out, functools.partial(store.accepted_content, job.key.dag_id))
        for batch in _batches(job, shard_plan):
            totals.batches += 1
            totals.bytes += batch.body_bytes
            previous = ledger.get((job.shard, batch.no))
            if previous is not None and previous.status == "sent":
                totals.resumed_batches += 1
                _count_resumed(job, batch, previous, totals)
            elif preview is not None:
                store.record_batch(job.key, _entry(job.shard, batch, "dry_run", attempts=0))
                totals.add(batch.ids(), "would_send")
                preview.add(batch)
                progress.advance(batch.count, f"batch {batch.no} (dry run)")
            else:
                flight.send(batch)
        flight.finish()
    totals.diff = preview.summary() if preview is not None else {}
    progress.finish(f"{totals.batches:,} batches")
    folded = store.fold_user_state(job.key.dag_id)
    log.debug("shard %d: %d accepted users folded into the user state", job.shard, folded)
    return shard_plan, totals


def _plan(job: ShardLoad, store: AuditStore) -> plan.Plan:
    previous = plan.read(job.stage, job.shard)
    if previous is not None and previous.matches(job.transform_id, force=job.force,
                                                 dry_run=job.dry_run):
        log.info("resuming the load plan of shard %d: %d to send, %d unchanged",
                 job.shard, previous.to_send, previous.unchanged)
        return previous
    store.clear_ledger(job.key, job.shard)  # batches of an older plan do not apply to this one
    null_removed = job.settings.removed_traits == "null"
    accepted = None if job.force and not null_removed else functools.partial(
        store.accepted_heads, job.key.dag_id)
    made = plan.make(plan.heads(job.stage, job.shard), accepted, transform_id=job.transform_id,
                     force=job.force, dry_run=job.dry_run, null_removed=null_removed)
    plan.write(job.stage, job.shard, made)
    log.info("load plan of shard %d: %d to send, %d unchanged since Segment accepted them%s%s%s",
             job.shard, made.to_send, made.unchanged,
             f"; {len(made.null_traits)} with removed traits sent as null"
             if made.null_traits else "",
             f"; group calls: {made.groups_to_send} to send, {made.groups_unchanged} unchanged"
             if made.groups_to_send or made.groups_unchanged else "",
             " (force: nothing skipped)" if job.force else "")
    return made


def _count_resumed(job: ShardLoad, batch: Batch, previous: BatchEntry, totals: Totals) -> None:
    """Count a batch an earlier attempt delivered: all of it, or, when Segment refused some
    of its messages, those the refused file does not name."""
    ids = batch.ids()
    if previous.messages == batch.count:
        totals.add(ids, "sent")
        return
    refused = {orjson.loads(line)["record"]["messageId"] for line in job.stage.lines(
        staging.refused_file(job.shard, batch.no))}
    totals.add([pair for pair in ids if pair[1] not in refused], "sent")
    totals.add([pair for pair in ids if pair[1] in refused], "refused")


def _batches(job: ShardLoad, shard_plan: plan.Plan) -> Iterator[Batch]:
    """The plan's batches, each with its messages' heads: the same plan always gives the same
    batches, so the ledger's batch numbers hold across retries."""
    return pack(shard_plan.selected(plan.with_nulls(plan.lines(job.stage, job.shard),
                                                    shard_plan.null_traits)),
                heads=shard_plan.selected(plan.heads(job.stage, job.shard)),
                max_bytes=job.settings.max_batch_bytes,
                max_messages=job.settings.max_batch_messages)


class _OneInFlight:
    """Sends a shard's batches on one worker thread, at most one batch in flight.

    Gzip and the HTTP exchange of a batch release the GIL, so they overlap
    packing the next batch and writing the previous batch's ledger row. The
    next batch is handed over only once the one in flight is answered, so a
    batch Segment does not take is the last one sent; it is recorded
    ``failed`` and its error stops the load, as before. Ledger rows are
    written in batch order, each only after its batch's 200.
    """

    def __init__(self, job: ShardLoad, store: AuditStore, sender: SegmentSender | None,
                 totals: Totals, progress: Progress) -> None:
        self._job, self._store, self._sender, self._totals = job, store, sender, totals
        self._progress = progress
        settings = job.settings
        # Shards load at once in up to load_slots pool slots: each keeps its share of the rate.
        self._limiter = RateLimiter(
            settings.send_rate / settings.load_slots if settings.send_rate else None)
        self._worker = ThreadPoolExecutor(max_workers=1,
                                          thread_name_prefix=f"send-{job.shard}")
        self._in_flight: tuple[Batch, Future[int]] | None = None
        self._isolation = _Isolation(job, store, sender, totals, progress)

    def __enter__(self) -> _OneInFlight:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._worker.shutdown(wait=True)  # a batch still in flight is answered, not recorded

    def send(self, batch: Batch) -> None:
        answered = self._answered()
        self._limiter.wait(batch.count)
        self._in_flight = (batch, self._worker.submit(self._sender.send, batch))
        if answered is not None:
            self._record_sent(*answered)

    def finish(self) -> None:
        answered = self._answered()
        if answered is not None:
            self._record_sent(*answered)

    def _answered(self) -> tuple[Batch, int] | None:
        """The batch in flight and its attempts, once Segment took it; raises when it did not.
        A batch Segment refuses as invalid is split until the messages it refuses are found
        (``_Isolation``): those become rejects, the others are delivered."""
        if self._in_flight is None:
            return None
        (batch, future), self._in_flight = self._in_flight, None
        try:
            return batch, future.result()
        except SegmentError as exc:
            if exc.status in SPLITTABLE and self._isolation.can_split(batch):
                try:
                    self._isolation.isolate(batch)
                except SyncError as failure:
                    self._record_failed(batch, failure)
                    raise
                return None
            self._record_failed(batch, exc)
            raise
        except SyncError as exc:
            self._record_failed(batch, exc)
            raise

    def _record_failed(self, batch: Batch, exc: SyncError) -> None:
        self._store.record_batch(self._job.key, _entry(
            self._job.shard, batch, "failed", self._sender.attempts, str(exc)))

    def _record_sent(self, batch: Batch, attempts: int) -> None:
        identifies, groups = _accepted_rows(batch, keep_content=_keeps_content(self._job))
        self._store.record_batch(self._job.key, _entry(self._job.shard, batch, "sent", attempts),
                                 identifies, groups)
        self._totals.count(len(identifies), len(groups), "sent")
        self._totals.attempts += attempts
        log.debug("shard %d batch %d: %d messages, %d bytes, sent in %d attempt(s)",
                  self._job.shard, batch.no, batch.count, batch.body_bytes, attempts)
        self._progress.advance(batch.count, f"batch {batch.no}")


def _keeps_content(job: ShardLoad) -> bool:
    return job.settings.content_retention > timedelta(0)


def _entry(shard: int, batch: Batch, status: str, attempts: int,
           error: str | None = None) -> BatchEntry:
    first, last = batch.edge_message_ids()
    return BatchEntry(shard, batch.no, status, batch.count, batch.body_bytes, attempts,
                      first, last, error)


class _Isolation:
    """Finds the messages of a refused batch that Segment refuses, by halving.

    The part known to hold a refused message is halved and its first half sent: taken, the
    refusal is in the second half; refused, it is in the first, and the second half waits
    untried. Once one message is left, it is sent alone: refused again, it is a reject
    (``segment_refused``, Segment's answer as its reason); then everything that waited goes
    in one request, which starts again if Segment refuses it too. So one refused message
    costs about log2(batch size) + 2 requests beyond the batch's own; past
    ``MOESIF_SEGMENT_MAX_REFUSED_SPLITS`` requests in a shard, the load fails as before. The
    batch's ledger entry counts what was delivered and is written once all of it is settled;
    the refused messages go to ``staging.refused_file`` first.
    """

    def __init__(self, job: ShardLoad, store: AuditStore, sender: SegmentSender | None,
                 totals: Totals, progress: Progress) -> None:
        self._job, self._store, self._sender = job, store, sender
        self._totals, self._progress = totals, progress
        self._left = job.settings.max_refused_splits

    def can_split(self, batch: Batch) -> bool:
        return self._left > 0 and bool(batch.heads)

    def isolate(self, batch: Batch) -> None:
        """Settle ``batch``, which Segment refused whole: deliver what Segment takes."""
        delivered: list[int] = []  # positions in the batch
        refused: list[tuple[int, str]] = []
        requests = self._sender.attempts
        suspect: list[int] = list(range(batch.count))  # holds a refused message
        waiting: list[int] = []  # not tried yet
        while suspect:
            if len(suspect) == 1:
                # Alone, to be sure it is this message Segment refuses, not the request.
                alone, attempts = self._try(batch, suspect)
                requests += attempts
                if alone is None:
                    delivered += suspect
                else:
                    refused.append((suspect[0], alone.segment_message or f"HTTP {alone.status}"))
                suspect, waiting = waiting, []
                if not suspect:
                    break
                failure, attempts = self._try(batch, suspect)
                requests += attempts
                if failure is None:
                    delivered += suspect
                    break
                continue
            half = len(suspect) // 2
            first, second = suspect[:half], suspect[half:]
            failure, attempts = self._try(batch, first)
            requests += attempts
            if failure is None:
                delivered += first
                suspect = second
            else:
                waiting += second
                suspect = first
        self._settle(batch, sorted(delivered), sorted(refused), requests)

    def _try(self, batch: Batch, positions: list[int]) -> tuple[SegmentError | None, int]:
        """Send the messages at ``positions`` as one request: (Segment's refusal or None,
        attempts)."""
        if self._left <= 0:
            cap = self._job.settings.max_refused_splits
            raise SyncError(f"Segment refused batch {batch.no} of shard {self._job.shard} and "
                            f"MOESIF_SEGMENT_MAX_REFUSED_SPLITS ({cap}) requests were spent "
                            "isolating refused messages: fix the data or raise the setting, "
                            "then clear the load task")
        self._left -= 1
        part = _part(batch, positions)
        try:
            return None, self._sender.send(part)
        except SegmentError as exc:
            if exc.status not in SPLITTABLE:
                raise
            return exc, self._sender.attempts

    def _settle(self, batch: Batch, delivered: list[int], refused: list[tuple[int, str]],
                requests: int) -> None:
        stage = self._job.stage
        ids = batch.ids()
        with stage.writer(staging.refused_file(self._job.shard, batch.no)) as out:
            for position, reason in refused:
                out.write_line(orjson.dumps({
                    "entity": "group" if is_group(ids[position][1]) else "user",
                    "id": ids[position][0], "kind": "segment_refused",
                    "reason": f"Segment refused the message: {reason}",
                    "record": orjson.loads(batch.messages[position])}))
        note = f"{staging.REFUSED_NOTE}{len(refused)} of {batch.count} messages"
        entry = BatchEntry(self._job.shard, batch.no, "sent", len(delivered),
                           batch.body_bytes, requests, *batch.edge_message_ids(), note)
        identifies, groups = _accepted_rows(batch, delivered,
                                            keep_content=_keeps_content(self._job))
        self._store.record_batch(self._job.key, entry, identifies, groups)
        self._totals.count(len(identifies), len(groups), "sent")
        self._totals.add([ids[position] for position, _ in refused], "refused")
        self._totals.attempts += requests
        log.warning("shard %d batch %d: Segment refused %d of %d messages; the others were "
                    "delivered, the refused ones are rejects (segment_refused)",
                    self._job.shard, batch.no, len(refused), batch.count)
        self._progress.advance(batch.count, f"batch {batch.no}")


def _part(batch: Batch, positions: list[int]) -> Batch:
    messages = [batch.messages[position] for position in positions]
    return Batch(batch.no, messages,
                 ENVELOPE_BYTES + sum(map(len, messages)) + len(messages) - 1,
                 [batch.heads[position] for position in positions])
