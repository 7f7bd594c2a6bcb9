"""Load one shard: plan what Segment lacks, pack it, send it, and keep the ledger.

First a plan (``plan``): each built message whose messageId is the last one Segment
accepted for that user is ``unchanged`` (unless ``force``); the rest are to send. A retried
load finds its plan (same transform, same flags) and skips the batches the ledger holds as
sent, so it resumes where it stopped and ends with the same counts. A dry run plans and
packs, records the batches as ``dry_run`` and sends nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import SyncError
from ..segment import Batch, RateLimiter, SegmentSender, pack
from ..settings import SyncSettings
from ..store import AuditStore, BatchEntry, RunKey
from . import plan, staging
from .staging import Staging

log = logging.getLogger(__name__)


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
    batches: int = 0
    sent: int = 0
    would_send: int = 0
    resumed_batches: int = 0
    attempts: int = 0
    bytes: int = 0


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
    with _OneInFlight(job, store, sender, totals) as flight:
        for batch in _batches(job, shard_plan):
            totals.batches += 1
            totals.bytes += batch.body_bytes
            previous = ledger.get((job.shard, batch.no))
            if previous is not None and previous.status == "sent":
                totals.resumed_batches += 1
                totals.sent += batch.count
            elif sender is None:
                store.record_batch(job.key, _entry(job.shard, batch, "dry_run", attempts=0))
                totals.would_send += batch.count
            else:
                flight.send(batch)
        flight.finish()
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
    accepted = None if job.force else functools.partial(store.accepted_message_ids,
                                                        job.key.dag_id)
    made = plan.make(plan.heads(job.stage, job.shard), accepted, transform_id=job.transform_id,
                     force=job.force, dry_run=job.dry_run)
    plan.write(job.stage, job.shard, made)
    log.info("load plan of shard %d: %d to send, %d unchanged since Segment accepted them%s",
             job.shard, made.to_send, made.unchanged,
             " (force: nothing skipped)" if job.force else "")
    return made


def _batches(job: ShardLoad, shard_plan: plan.Plan) -> Iterator[Batch]:
    """The plan's batches, each with its messages' heads: the same plan always gives the same
    batches, so the ledger's batch numbers hold across retries."""
    return pack(shard_plan.selected(job.stage.lines(staging.messages_file(job.shard))),
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
                 totals: Totals) -> None:
        self._job, self._store, self._sender, self._totals = job, store, sender, totals
        settings = job.settings
        # Shards load at once in up to load_slots pool slots: each keeps its share of the rate.
        self._limiter = RateLimiter(
            settings.send_rate / settings.load_slots if settings.send_rate else None)
        self._worker = ThreadPoolExecutor(max_workers=1,
                                          thread_name_prefix=f"send-{job.shard}")
        self._in_flight: tuple[Batch, Future[int]] | None = None

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
        """The batch in flight and its attempts, once Segment took it; raises when it did not."""
        if self._in_flight is None:
            return None
        (batch, future), self._in_flight = self._in_flight, None
        try:
            return batch, future.result()
        except SyncError as exc:
            self._store.record_batch(self._job.key, _entry(
                self._job.shard, batch, "failed", self._sender.attempts, str(exc)))
            raise

    def _record_sent(self, batch: Batch, attempts: int) -> None:
        self._store.record_batch(self._job.key, _entry(self._job.shard, batch, "sent", attempts),
                                 accepted=batch.ids())
        self._totals.sent += batch.count
        self._totals.attempts += attempts
        log.info("shard %d batch %d: %d messages, %d bytes, sent in %d attempt(s)",
                 self._job.shard, batch.no, batch.count, batch.body_bytes, attempts)


def _entry(shard: int, batch: Batch, status: str, attempts: int,
           error: str | None = None) -> BatchEntry:
    first, last = batch.edge_message_ids()
    return BatchEntry(shard, batch.no, status, batch.count, batch.body_bytes, attempts,
                      first, last, error)
