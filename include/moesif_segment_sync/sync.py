"""The five stages of a run, as plain functions the DAG's tasks call.

Each takes a ``Run`` (who, which window, which settings) and the endpoints
it needs, does its work against staging, and returns a small JSON-able
summary: paths and counts, never data.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import codec
from .codec import format_utc
from .errors import AccountingError, RejectThresholdError, SyncError
from .moesif import FieldNames, MoesifClient
from .pipeline import Staging, TraitPolicy, extract, plan, staging
from .pipeline import transform as transforming
from .segment import Batch, RateLimiter, SegmentSender, pack
from .settings import Endpoint, SyncSettings
from .store import AuditStore, BatchEntry, RunKey, check_accounting, now
from .window import RunParams, Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    dag_id: str
    run_id: str
    mode: str  # scheduled, backfill or manual
    window: Window
    params: RunParams
    settings: SyncSettings
    staging_root: str
    audit_url: str = field(repr=False)

    @property
    def key(self) -> RunKey:
        return RunKey(self.dag_id, self.run_id)

    def staging(self) -> Staging:
        return Staging(self.staging_root, self.dag_id, self.run_id,
                       compress_level=self.settings.compress_level)

    def audit_store(self) -> AuditStore:
        return AuditStore(self.audit_url, lock_timeout=self.settings.audit_lock_timeout)


def _stage(function: Callable[..., dict]) -> Callable[..., dict]:
    """Adds when the stage started to its summary (the audit's run start is the earliest),
    and runs the stage without the cyclic garbage collector: parsed JSON has no cycles, and
    full collections over a chunk of 50,000 records cost a third of the stage (bench/)."""

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> dict:
        started_at = format_utc(now())
        collecting = gc.isenabled()
        gc.disable()
        try:
            summary = function(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()
        return {**summary, "started_at": started_at}

    return timed


def _moesif(run: Run, moesif: Endpoint) -> MoesifClient:
    return MoesifClient(moesif.url, moesif.secret, run.settings)


@_stage
def extract_users(run: Run, moesif: Endpoint) -> dict:
    with _moesif(run, moesif) as client:
        return extract.extract_users(client, run.staging(), run.window,
                              full_refresh=run.params.full_refresh,
                              id_chunk_size=run.settings.id_chunk_size,
                              hash_fields=run.settings.hash_fields)


@_stage
def extract_companies(run: Run, moesif: Endpoint) -> dict:
    with _moesif(run, moesif) as client:
        return extract.extract_companies(client, run.staging(), run.window,
                                  full_refresh=run.params.full_refresh)


def transform(run: Run) -> list[dict]:
    """The transform's summary once per shard of messages: one mapped load task each."""
    summary = _transform_all(run)
    return [{**summary, "shard": shard} for shard in range(summary["shards"])]


@_stage
def _transform_all(run: Run) -> dict:
    return transforming.transform(run.staging(), default_timestamp=format_utc(run.window.end),
                      chunk_size=run.settings.chunk_size, shard_size=run.settings.shard_size,
                      workers=run.settings.transform_workers,
                      fields=FieldNames.from_overrides(run.settings.field_names),
                      policy=TraitPolicy(run.settings.trait_allow, run.settings.trait_deny))


@_stage
def load(run: Run, segment: Endpoint | None, shard: dict) -> dict:
    """Send one shard's messages that Segment does not have yet, writing the ledger as it goes.

    First a plan (``plan.py``): each built message whose messageId is the last
    one Segment accepted for that user is ``unchanged`` (unless ``force``);
    the rest are to send. A retried load finds its plan (same transform) and
    skips the batches the ledger holds as sent, so it resumes where it stopped
    and ends with the same counts. A dry run plans and packs, records the
    batches as ``dry_run`` and sends nothing. ``shard`` is one element of what
    ``transform`` returned.
    """
    started = time.monotonic()
    number = shard["shard"]
    store = run.audit_store()  # opened first: a store that is down fails the task before sending
    sender = None
    try:
        store.ensure_writable()
        shard_plan = _plan(run, store, shard["transform_id"], number)
        ledger = store.ledger(run.key, number)
        if not run.params.dry_run:
            if segment is None:
                raise SyncError("load needs the Segment connection unless dry_run is set")
            sender = SegmentSender(segment.url, segment.secret, run.settings)
        totals = _send(run, store, sender, ledger, number, shard_plan)
    finally:
        if sender is not None:
            sender.close()
        store.close()
    return {**totals, "shard": number, "unchanged": shard_plan.unchanged,
            "planned": shard_plan.to_send, "seconds": round(time.monotonic() - started, 3)}


def _plan(run: Run, store: AuditStore, transform_id: str, shard: int) -> plan.Plan:
    stage = run.staging()
    force, dry_run = run.params.force, run.params.dry_run
    previous = plan.read(stage, shard)
    if previous is not None and previous.matches(transform_id, force=force, dry_run=dry_run):
        log.info("resuming the load plan of shard %d: %d to send, %d unchanged",
                 shard, previous.to_send, previous.unchanged)
        return previous
    store.clear_ledger(run.key, shard)  # batches of an older plan do not apply to this one
    accepted = None if force else functools.partial(store.accepted_message_ids, run.dag_id)
    made = plan.make(plan.heads(stage, shard), accepted, transform_id=transform_id,
                     force=force, dry_run=dry_run)
    plan.write(stage, shard, made)
    log.info("load plan of shard %d: %d to send, %d unchanged since Segment accepted them%s",
             shard, made.to_send, made.unchanged, " (force: nothing skipped)" if force else "")
    return made


def _batches(run: Run, shard: int, shard_plan: plan.Plan) -> Iterator[Batch]:
    """The plan's batches, each with its messages' heads: the same plan always gives the same
    batches, so the ledger's batch numbers hold across retries."""
    stage = run.staging()
    return pack(shard_plan.selected(stage.lines(staging.messages_file(shard))),
                heads=shard_plan.selected(plan.heads(stage, shard)),
                max_bytes=run.settings.max_batch_bytes,
                max_messages=run.settings.max_batch_messages)


def _send(run: Run, store: AuditStore, sender: SegmentSender | None,
          ledger: dict[tuple[int, int], BatchEntry], shard: int, shard_plan: plan.Plan) -> dict:
    totals = {"batches": 0, "sent": 0, "would_send": 0, "resumed_batches": 0, "attempts": 0,
              "bytes": 0}
    with _OneInFlight(run, store, sender, shard, totals) as flight:
        for batch in _batches(run, shard, shard_plan):
            totals["batches"] += 1
            totals["bytes"] += batch.body_bytes
            previous = ledger.get((shard, batch.no))
            if previous is not None and previous.status == "sent":
                totals["resumed_batches"] += 1
                totals["sent"] += batch.count
            elif sender is None:
                store.record_batch(run.key, _entry(shard, batch, "dry_run", attempts=0))
                totals["would_send"] += batch.count
            else:
                flight.send(batch)
        flight.finish()
    return totals


class _OneInFlight:
    """Sends a shard's batches on one worker thread, at most one batch in flight.

    Gzip and the HTTP exchange of a batch release the GIL, so they overlap
    packing the next batch and writing the previous batch's ledger row. The
    next batch is handed over only once the one in flight is answered, so a
    batch Segment does not take is the last one sent; it is recorded
    ``failed`` and its error stops the load, as before. Ledger rows are
    written in batch order, each only after its batch's 200.
    """

    def __init__(self, run: Run, store: AuditStore, sender: SegmentSender | None, shard: int,
                 totals: dict) -> None:
        self._run, self._store, self._sender = run, store, sender
        self._shard, self._totals = shard, totals
        settings = run.settings
        # Shards load at once in up to load_slots pool slots: each keeps its share of the rate.
        self._limiter = RateLimiter(
            settings.send_rate / settings.load_slots if settings.send_rate else None)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"send-{shard}")
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
            self._store.record_batch(self._run.key, _entry(
                self._shard, batch, "failed", self._sender.attempts, str(exc)))
            raise

    def _record_sent(self, batch: Batch, attempts: int) -> None:
        self._store.record_batch(self._run.key, _entry(self._shard, batch, "sent", attempts),
                                 accepted=batch.ids())
        self._totals["sent"] += batch.count
        self._totals["attempts"] += attempts
        log.info("shard %d batch %d: %d messages, %d bytes, sent in %d attempt(s)",
                 self._shard, batch.no, batch.count, batch.body_bytes, attempts)


def _entry(shard: int, batch: Batch, status: str, attempts: int,
           error: str | None = None) -> BatchEntry:
    first, last = batch.edge_message_ids()
    return BatchEntry(shard, batch.no, status, batch.count, batch.body_bytes, attempts,
                      first, last, error)


def _summed(loads: list[dict]) -> dict:
    """The shards' load summaries as one: counts add up, the slowest shard is the load's time."""
    total = {name: sum(part[name] for part in loads) for name in (
        "batches", "sent", "would_send", "resumed_batches", "attempts", "bytes", "unchanged")}
    return {**total, "shards": len(loads), "seconds": max(part["seconds"] for part in loads),
            "started_at": min(part["started_at"] for part in loads)}


def audit(run: Run, extracted_users: dict, extracted_companies: dict, shards: list[dict],
          loads: list[dict]) -> dict:
    """Write the run record, its rejects and ``audit.json``; fail when the counts do not add up.

    ``shards`` is what ``transform`` returned and ``loads`` what each shard's load did.
    """
    if len(loads) != len(shards):
        raise AccountingError(f"accounting: {len(shards)} shards were built but {len(loads)} "
                              "loads reported")
    summaries = {"extract_users": extracted_users, "extract_companies": extracted_companies,
                 "transform": shards[0], "load": _summed(loads)}
    stage = run.staging()
    produced, loaded = summaries["transform"], summaries["load"]
    dry_run = run.params.dry_run
    counts = {
        "considered": produced["considered"],
        "sent": loaded["sent"],
        "would_send": loaded["would_send"],
        "unchanged": loaded["unchanged"],
        "rejected": produced["rejected"],
    }
    record: dict[str, Any] = {
        "mode": run.mode,
        "window_start": run.window.start,
        "window_end": run.window.end,
        "window_source": run.window.source,
        "params": _params(run.params),
        "dry_run": dry_run,
        "started_at": min(datetime.fromisoformat(summary["started_at"])
                          for summary in summaries.values()),
        "finished_at": now(),
        "batches": loaded["batches"],
        "counts": {
            "routes": produced["routes"],
            "rejected_by_kind": produced["rejected_by_kind"],
            "warnings": produced["warnings"],
            "companies": produced["companies"],
            "companies_rejected": produced["companies_rejected"],
            "users_in_window": summaries["extract_users"]["users_in_window"],
            "users_via_company": summaries["extract_users"]["users_via_company"],
            "companies_in_window": summaries["extract_companies"]["companies"],
            "user_companies": summaries["extract_users"]["user_companies"],
            "moesif_requests": (summaries["extract_users"]["requests"]
                                + summaries["extract_companies"]["requests"]),
            "shards": loaded["shards"],
            "resumed_batches": loaded["resumed_batches"],
            "send_attempts": loaded["attempts"],
            "bytes": loaded["bytes"],
        },
        "timings": {name: summary.get("seconds") for name, summary in summaries.items()},
        "staging": stage.dir_url,
        **counts,
    }
    error = None
    try:
        check_accounting(**counts, dry_run=dry_run)
        check_rejected_share(counts["rejected"], counts["considered"],
                             run.settings.max_rejected_share)
    except (AccountingError, RejectThresholdError) as exc:
        error = exc
    record["status"] = "failed" if error else "success"
    record["error"] = str(error) if error else None
    store = run.audit_store()
    try:
        stored_rejects = store.replace_rejects(run.key, _reject_rows(stage))
        store.record_run(run.key, **record)
    finally:
        store.close()
    report = {"dag_id": run.dag_id, "run_id": run.run_id, **_jsonable(record),
              "rejects_stored": stored_rejects, "audit_store": store.url}
    stage.write_json(staging.AUDIT, report)
    log.info("run summary\n%s", summary_table(report))
    if error:
        raise error
    return report


def check_rejected_share(rejected: int, considered: int, threshold: float) -> None:
    """A run that rejects more than ``threshold`` of its users fails, so Airflow alerts."""
    if considered and rejected / considered > threshold:
        raise RejectThresholdError(
            f"{rejected} of {considered} users rejected ({rejected / considered:.1%}), over the "
            f"{threshold:.1%} threshold (MOESIF_SEGMENT_MAX_REJECTED_SHARE): see the run's "
            "rejects for the reasons")


def _params(params: RunParams) -> dict:
    return {"start": params.start.isoformat() if params.start else None,
            "end": params.end.isoformat() if params.end else None,
            "full_refresh": params.full_refresh, "dry_run": params.dry_run,
            "force": params.force, "doctor": params.doctor}


def _reject_rows(stage: Staging):  # noqa: ANN202 - a generator of dicts
    for number, line in enumerate(stage.lines(staging.REJECTS), start=1):
        reject, _ = codec.loads(line)
        yield {
            "entity": reject["entity"],
            "entity_id": reject["id"],
            "kind": reject["kind"],
            "reason": reject["reason"],
            "raw_location": f"{stage.url(staging.REJECTS)}#L{number}",
            "raw_record": codec.dumps(reject["record"], lenient=True).decode("ascii"),
        }


def _jsonable(record: dict) -> dict:
    return {key: format_utc(value) if isinstance(value, datetime) else value
            for key, value in record.items()}


def summary_table(report: dict) -> str:
    """The one-screen summary the audit task logs."""
    rows = [
        ("run", report["run_id"]),
        ("mode", report["mode"]),
        ("window", f"[{report['window_start']}, {report['window_end']}) "
                   f"({report['window_source']})"),
        ("considered", report["considered"]),
        ("would send" if report["dry_run"] else "sent",
         report["would_send"] if report["dry_run"] else report["sent"]),
        ("unchanged", report["unchanged"]),
        ("rejected", report["rejected"]),
        ("batches", report["batches"]),
        ("warnings", ", ".join(f"{k} {v}" for k, v in report["counts"]["warnings"].items())
         or "none"),
        ("rejected by kind", ", ".join(f"{k} {v}" for k, v in
                                       report["counts"]["rejected_by_kind"].items()) or "none"),
        ("status", report["status"]),
        ("staged files", report["staging"]),
        ("audit store", report["audit_store"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
