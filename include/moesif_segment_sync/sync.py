"""The five stages of a run, as plain functions the DAG's tasks call: the story.

Each takes a ``Run`` (who, which window, which settings) and the endpoints it needs, does
its work against staging, and returns a typed summary (``summaries``): paths and counts,
never data. ``audit`` checks the summaries add up, builds the run record, gives the
verdict, persists it, and reports.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson

from . import codec, metrics
from .codec import format_utc
from .errors import AccountingError, ConfigError, RejectThresholdError, SyncError
from .moesif import FieldNames, MoesifClient
from .pipeline import Staging, TraitPolicy, extract, plan, staging
from .pipeline import load as loading
from .pipeline import transform as transforming
from .pipeline.mapping import is_group
from .segment import SegmentSender
from .settings import Endpoint, SyncSettings
from .store import AuditStore, RunKey, check_accounting, now, summary_table
from .summaries import (
    Built,
    ExtractedCompanies,
    ExtractedUsers,
    Loaded,
    RunCounts,
    RunRecord,
    Shard,
    StageSummary,
)
from .window import RunParams, Window
from .window import check_window as check_window_rules

log = logging.getLogger(__name__)
S = TypeVar("S", bound=StageSummary)


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


def _stage(function: Callable[..., S]) -> Callable[..., S]:
    """Adds when the stage started to its summary (the audit's run start is the earliest),
    and runs the stage without the cyclic garbage collector: parsed JSON has no cycles, and
    full collections over a chunk of 50,000 records cost a third of the stage (bench/)."""

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> S:
        started_at = now()
        collecting = gc.isenabled()
        gc.disable()
        try:
            summary = function(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()
        return summary.model_copy(update={"started_at": started_at})

    return timed


def check_window(run: Run) -> dict:
    """Refuse a window that cannot be meant (``window.check_window``) before anything is
    extracted; the window and how it was chosen, for the task log."""
    check_window_rules(run.window, run.params, now=now(), max_window=run.settings.max_window)
    for note in run.window.notes:
        log.warning("%s", note)
    log.info("window [%s, %s) from %s", run.window.start.isoformat(),
             run.window.end.isoformat(), run.window.source)
    return {"window_start": format_utc(run.window.start), "window_end": format_utc(run.window.end),
            "window_source": run.window.source, "notes": list(run.window.notes)}


def _moesif(run: Run, moesif: Endpoint) -> MoesifClient:
    settings = run.settings if moesif.page_size is None else run.settings.model_copy(
        update={"page_size": moesif.page_size})
    return MoesifClient(moesif.url, moesif.secret, settings)


@_stage
def extract_users(run: Run, moesif: Endpoint) -> ExtractedUsers:
    """Stage the users changed or seen in the window, the users of the companies that changed
    in it, and the other companies those users belong to."""
    with _moesif(run, moesif) as client:
        return extract.extract_users(client, run.staging(), run.window,
                                     full_refresh=run.params.full_refresh,
                                     id_chunk_size=run.settings.id_chunk_size,
                                     hash_fields=run.settings.hash_fields,
                                     lookback=run.settings.lookback,
                                     user_ids=_rejected_users(run))


@_stage
def extract_companies(run: Run, moesif: Endpoint) -> ExtractedCompanies:
    """Stage the companies changed or seen in the window (every company on a full refresh)."""
    with _moesif(run, moesif) as client:
        return extract.extract_companies(client, run.staging(), run.window,
                                         full_refresh=run.params.full_refresh,
                                         lookback=run.settings.lookback,
                                         retry=run.params.retry_rejects_of is not None)


def _rejected_users(run: Run) -> list[str] | None:
    """With ``retry_rejects_of``: the ids of the users that run rejected; else None."""
    retried = run.params.retry_rejects_of
    if retried is None:
        return None
    store = run.audit_store()
    try:
        key = RunKey(run.dag_id, retried)
        if store.run(key) is None:
            raise ConfigError(f"param retry_rejects_of: no run {retried!r} of {run.dag_id} in "
                              "the audit store")
        ids = store.rejected_user_ids(key)
    finally:
        store.close()
    log.info("retrying the rejects of %s: %d user(s)", retried, len(ids))
    return ids


def transform(run: Run) -> list[Shard]:
    """Join companies onto users, build the messages in shards and stage the rejects; the
    summary once per shard of messages: one mapped load task each."""
    built = _transform_all(run)
    return [Shard(**built.model_dump(), shard=number) for number in range(built.shards)]


@_stage
def _transform_all(run: Run) -> Built:
    return transforming.transform(
        run.staging(), default_timestamp=format_utc(run.window.end),
        chunk_size=run.settings.chunk_size, shard_size=run.settings.shard_size,
        workers=run.settings.transform_workers, progress_seconds=run.settings.progress_seconds,
        fields=FieldNames.from_overrides(run.settings.field_names),
        policy=TraitPolicy(run.settings.trait_allow, run.settings.trait_deny),
        group_calls=run.settings.group_calls)


@_stage
def load(run: Run, segment: Endpoint | None, shard: Shard | dict) -> Loaded:
    """Send one shard's messages that Segment does not have yet, writing the ledger as it goes
    (``pipeline.load``); a dry run sends nothing and needs no ``segment``."""
    shard = Shard.model_validate(shard)
    started = time.monotonic()
    store = run.audit_store()  # opened first: a store that is down fails the task before sending
    sender = None
    try:
        store.ensure_writable()
        if segment is not None and not run.params.dry_run:
            sender = SegmentSender(segment.url, segment.secret, run.settings)
        job = loading.ShardLoad(run.key, run.staging(), run.settings, shard.shard,
                                shard.transform_id, run.params.force, run.params.dry_run)
        shard_plan, totals = loading.load_shard(job, store, sender)
    finally:
        if sender is not None:
            sender.close()
        store.close()
    return Loaded(**asdict(totals), shard=shard.shard, unchanged=shard_plan.unchanged,
                  planned=shard_plan.to_send, group_unchanged=shard_plan.groups_unchanged,
                  traits_nulled=len(shard_plan.null_traits),
                  seconds=round(time.monotonic() - started, 3))


def audit(run: Run, extracted_users: ExtractedUsers | dict,
          extracted_companies: ExtractedCompanies | dict, shards: list[Shard | dict],
          loads: list[Loaded | dict]) -> dict:
    """Write the run record, its rejects and ``audit.json``; fail when the counts do not add up
    or too many users were rejected. Returns the report (``audit.json``)."""
    if len(loads) != len(shards):
        raise AccountingError(f"accounting: {len(shards)} shards were built but {len(loads)} "
                              "loads reported")
    record = _record(run, ExtractedUsers.model_validate(extracted_users),
                     ExtractedCompanies.model_validate(extracted_companies),
                     Shard.model_validate(shards[0]),
                     Loaded.summed([Loaded.model_validate(part) for part in loads]),
                     found_late=_found_late(run, len(shards)))
    error = _verdict(record, run.settings.max_rejected_share)
    record = record.model_copy(update={"status": "failed" if error else "success",
                                       "error": str(error) if error else None,
                                       "failed_task": "audit" if error else None})
    report = _persist(run, record)
    log.info("run summary\n%s", summary_table(report))
    _count(record)
    if error:
        raise error
    return report


def _count(record: RunRecord) -> None:
    """The run's figures as counters and timers (``metrics``), once per run: the audit runs
    once, where a retried load would count its batches twice."""
    counts = record.counts
    for kind, value in counts.groups.items():
        if kind != "built":
            metrics.incr(f"groups.{kind}", value)
    for name, value in (("users.considered", record.considered),
                        ("messages.sent", record.sent), ("messages.would_send", record.would_send),
                        ("messages.unchanged", record.unchanged),
                        ("messages.rejected", record.rejected), ("batches", record.batches),
                        ("users.extracted", counts.users_in_window + counts.users_via_company),
                        ("companies.extracted", counts.companies),
                        ("moesif.requests", counts.moesif_requests),
                        ("segment.attempts", counts.send_attempts)):
        metrics.incr(name, value)
    for stage, seconds in record.timings.items():
        if seconds is not None:
            metrics.timing(f"{stage}.duration", seconds)
    metrics.incr(f"runs.{record.status}")


def _found_late(run: Run, shards: int) -> int:
    """Users found only by the lookback that this run sends (or would send): those no
    earlier run had, since Moesif indexed them after their own window's run."""
    stage = run.staging()
    if not stage.exists(staging.LOOKBACK_IDS):
        return 0
    earlier = {orjson.loads(line) for line in stage.lines(staging.LOOKBACK_IDS)}
    found = 0
    for shard in range(shards) if earlier else ():
        shard_plan = plan.read(stage, shard)
        if shard_plan is not None:
            found += sum(head[0] in earlier and not is_group(head[1])
                         for head in map(orjson.loads, shard_plan.selected(
                             plan.heads(stage, shard))))
    return found


def _record(run: Run, users: ExtractedUsers, companies: ExtractedCompanies, built: Built,
            loaded: Loaded, *, found_late: int = 0) -> RunRecord:
    stages = {"extract_users": users, "extract_companies": companies, "transform": built,
              "load": loaded}
    return RunRecord(
        mode=run.mode, window_start=run.window.start, window_end=run.window.end,
        window_source=run.window.source, params=run.params.as_dict(),
        dry_run=run.params.dry_run,
        started_at=min((s.started_at for s in stages.values() if s.started_at), default=None),
        finished_at=now(), status="success", considered=built.considered, sent=loaded.sent,
        would_send=loaded.would_send, unchanged=loaded.unchanged,
        rejected=built.rejected + loaded.refused, batches=loaded.batches,
        counts=RunCounts(
            routes=built.routes, rejected_by_kind=dict(sorted({
                **built.rejected_by_kind,
                **({"segment_refused": loaded.refused} if loaded.refused else {})}.items())),
            warnings=built.warnings, companies=built.companies,
            companies_rejected=built.companies_rejected,
            users_in_window=users.users_in_window, users_via_company=users.users_via_company,
            companies_in_window=companies.companies, user_companies=users.user_companies,
            moesif_requests=users.requests + companies.requests, shards=loaded.shards,
            resumed_batches=loaded.resumed_batches, send_attempts=loaded.attempts,
            bytes=loaded.bytes, users_in_lookback=users.users_in_lookback,
            users_found_late=found_late, groups=_groups(built, loaded),
            traits_nulled=loaded.traits_nulled, diff=loaded.diff,
            privacy={"hash_fields": run.settings.hash_fields,
                     "trait_allow": run.settings.trait_allow,
                     "trait_deny": run.settings.trait_deny}),
        timings={name: summary.seconds for name, summary in stages.items()},
        staging=run.staging().dir_url,
        notes=[*run.window.notes,
               *([f"retries the rejects of {run.params.retry_rejects_of}: {built.considered:,} "
                  "user(s) read again from Moesif, through today's mapping"]
                 if run.params.retry_rejects_of else []),
               *(["0 users changed or seen in this window"] if built.considered == 0 else []),
               *([f"the lookback found {found_late:,} user(s) that no earlier run had sent "
                  "(indexed by Moesif after their own window's run)"] if found_late else []),
               *([f"Segment refused {loaded.refused:,} message(s) one by one; the others of "
                  "their batches were delivered; they are rejects of kind segment_refused"]
                 if loaded.refused else []),
               *([f"Segment refused {loaded.group_refused:,} group call(s) one by one; they "
                  "are rejects of entity group, kind segment_refused"]
                 if loaded.group_refused else []),
               *([f"{loaded.traits_nulled:,} user(s) lost top-level traits since Segment last "
                  "accepted them: " + ("they would be sent" if run.params.dry_run else "sent")
                  + " as null (MOESIF_SEGMENT_REMOVED_TRAITS=null)"]
                 if loaded.traits_nulled else [])])


def _groups(built: Built, loaded: Loaded) -> dict[str, int]:
    """What became of the run's group calls; empty when it built none."""
    if not built.groups:
        return {}
    return {"built": built.groups, "sent": loaded.group_sent,
            "would_send": loaded.group_would_send, "unchanged": loaded.group_unchanged,
            "refused": loaded.group_refused}


def _verdict(record: RunRecord, max_rejected_share: float) -> SyncError | None:
    """Why the run fails, or None: its counts do not add up, or it rejected too many users
    (not asked of a retry of rejects, whose users were all rejected once)."""
    try:
        check_accounting(considered=record.considered, sent=record.sent,
                         would_send=record.would_send, unchanged=record.unchanged,
                         rejected=record.rejected, dry_run=record.dry_run)
        groups = record.counts.groups
        if groups:
            check_accounting(considered=groups["built"], sent=groups["sent"],
                             would_send=groups["would_send"], unchanged=groups["unchanged"],
                             rejected=groups["refused"], dry_run=record.dry_run,
                             what="group calls")
        if not record.params.get("retry_rejects_of"):
            check_rejected_share(record.rejected, record.considered, max_rejected_share)
    except (AccountingError, RejectThresholdError) as exc:
        return exc
    return None


def _persist(run: Run, record: RunRecord) -> dict:
    """The record and its rejects in the audit store, and ``audit.json`` beside the staged
    files; returns what ``audit.json`` holds."""
    stage = run.staging()
    store = run.audit_store()
    try:
        refused = [staging.refused_file(shard, batch_no) for (shard, batch_no), entry
                   in sorted(store.ledger(run.key).items())
                   if (entry.error or "").startswith(staging.REFUSED_NOTE)]
        stored_rejects = store.replace_rejects(run.key, _reject_rows(stage, refused))
        store.record_run(run.key, **record.model_dump())
        purged = store.purge_content(run.dag_id, now() - run.settings.content_retention)
        if purged:
            log.info("forgot the kept content of %d message(s) accepted more than %s ago "
                     "(MOESIF_SEGMENT_CONTENT_RETENTION)", purged, run.settings.content_retention)
    finally:
        store.close()
    report = {"dag_id": run.dag_id, "run_id": run.run_id, **record.model_dump(mode="json"),
              "rejects_stored": stored_rejects, "audit_store": store.url}
    stage.write_json(staging.AUDIT, report)
    return report


def record_failure(run: Run, task: str, error: str, *, started_at: datetime | None = None,
                   built: Shard | dict | None = None) -> None:
    """The record of a run that failed in ``task``: its window, ``failed``, the one-line
    ``error``, and what it did so far (the transform's counts when it got that far, the
    batches the ledger holds as sent). A later attempt that succeeds writes over it."""
    store = run.audit_store()
    try:
        existing = store.run(run.key)
        if existing and existing["status"] == "failed" and existing["failed_task"] == task \
                and existing["counts"]:
            return  # the audit's own verdict, recorded whole
        ledger = [entry for entry in store.ledger(run.key).values() if entry.status == "sent"]
        shard = Shard.model_validate(built) if built is not None else None
        sent = sum(entry.messages for entry in ledger)
        record = RunRecord(
            mode=run.mode, status="failed", window_start=run.window.start,
            window_end=run.window.end, window_source=run.window.source,
            dry_run=run.params.dry_run, considered=shard.considered if shard else 0,
            sent=sent, would_send=0, unchanged=0, rejected=shard.rejected if shard else 0,
            batches=len(ledger), started_at=started_at, finished_at=now(), error=error,
            failed_task=task, notes=[*run.window.notes, *_next_step(task, ledger)],
            params=run.params.as_dict(), counts=None, timings={},
            staging=run.staging().dir_url)
        store.record_run(run.key, **{**record.model_dump(), "counts": {}})
        metrics.incr("runs.failed")
    finally:
        store.close()


def _next_step(task: str, sent: list) -> list[str]:
    if task == "check_window":  # a cleared task would read the same params again
        return ["the run's params were refused, so its window above is its data interval; "
                "trigger a new run with a corrected window"]
    if task != "load":
        return [f"fix the cause and clear the {task} task: the run starts again from there"]
    last = max((entry.batch_no for entry in sent), default=0)
    return [f"{len(sent)} batch(es), {sum(e.messages for e in sent):,} messages, reached "
            f"Segment before the failure; fix the cause and clear the load task: it resumes "
            f"after batch {last}" if sent else
            "no batch reached Segment; fix the cause and clear the load task"]


def check_rejected_share(rejected: int, considered: int, threshold: float) -> None:
    """A run that rejects more than ``threshold`` of its users fails, so Airflow alerts."""
    if considered and rejected / considered > threshold:
        raise RejectThresholdError(
            f"{rejected} of {considered} users rejected ({rejected / considered:.1%}), over the "
            f"{threshold:.1%} threshold (MOESIF_SEGMENT_MAX_REJECTED_SHARE): see the run's "
            "rejects for the reasons")


def _reject_rows(stage: Staging, refused_files: list[str] = ()) -> Iterator[dict]:
    """The transform's rejects, then the messages Segment refused (``refused_files``)."""
    for name in (staging.REJECTS, *refused_files):
        for number, line in enumerate(stage.lines(name), start=1):
            reject, _ = codec.loads(line)
            yield {
                "entity": reject["entity"],
                "entity_id": reject["id"],
                "kind": reject["kind"],
                "reason": reject["reason"],
                "raw_location": f"{stage.url(name)}#L{number}",
                "raw_record": codec.dumps(reject["record"], lenient=True).decode("ascii"),
            }
