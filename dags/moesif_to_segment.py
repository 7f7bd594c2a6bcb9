"""
# moesif_to_segment

Keeps Segment's user profiles in step with Moesif. Each run syncs one
**window** `[start, end)`:

0. `check_window` refuses a window that cannot be meant (bad params, an end in
   the future, longer than `MOESIF_SEGMENT_MAX_WINDOW` without
   `allow_long_window`) before anything is extracted.
1. `extract_users` and `extract_companies` (in parallel) stage the Moesif users
   and companies that changed or were seen in the window, plus the users of
   changed companies and the companies those users belong to.
2. `transform` joins each user's company onto the user and builds the
   `identify` messages of Moesif's own Segment source; bad records become
   rejects with a reason.
3. `load` (one mapped task per shard of messages) sends to Segment in batches
   what Segment does not have yet, and writes a ledger entry per batch; a
   retried load resumes after the last batch sent.
4. `audit` writes the run record, logs a summary, and fails the run when
   `considered = sent + unchanged + rejected` does not hold. A run that fails
   before its audit still gets a record: the failing task and its error.

## Windows
A scheduled run syncs its data interval (hourly by default,
`MOESIF_SEGMENT_SCHEDULE`, UTC). A manual run syncs `start`..`end` when both
params are set, otherwise its data interval when one was specified, otherwise
the last complete schedule interval before it was triggered. A backfill run
always syncs its own interval (explicit `start`/`end` are ignored, and the
audit says so). The audit records which window was chosen.

## Params
| param | meaning |
| --- | --- |
| `start`, `end` | an explicit window: ISO date or datetime (UTC unless offset); both or neither |
| `allow_long_window` | run a window longer than `MOESIF_SEGMENT_MAX_WINDOW` (31 days) |
| `full_refresh` | ignore the window and identify every user |
| `dry_run` | build, batch and audit, but send nothing (try this first) |
| `force` | send even messages whose content Segment already has |
| `doctor` | run the doctor's checks first; a failing check stops the run |
| `retry_rejects_of` | a run id: send the users it rejected again (no window is read) |

## Backfill
Trigger > Backfill in the UI (or `POST /api/v2/backfills`) over a date range
creates one run per schedule interval; each syncs exactly its window. From and
To are logical dates, that is window starts: for data between 23:00 and 02:00,
choose From 23:00 and To 01:00 (three hourly runs).

Connections: the ids at the top of this file (`moesif_default`, `segment_default`, and
the optional `moesif_segment_audit`). docs/storage.md describes the staged files and the
audit store.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from moesif_segment_sync.airflow import stage
from moesif_segment_sync.airflow.alerts import RunAlert
from moesif_segment_sync.settings import load_settings

MOESIF_CONN_ID = "moesif_default"
SEGMENT_CONN_ID = "segment_default"
AUDIT_CONN_ID = "moesif_segment_audit"  # optional: SQLite under AIRFLOW_HOME without it

SETTINGS = load_settings()  # a bad MOESIF_SEGMENT_* value is an import error naming it
SCHEDULE = os.environ.get("MOESIF_SEGMENT_SCHEDULE", "0 * * * *")
# What the sync reads and what it updates, as Airflow Assets: a DAG scheduled on
# SEGMENT_PROFILES runs after each sync, its event's extra holding the run's counts.
MOESIF_USERS = Asset(name="moesif_users", uri=f"moesif://{MOESIF_CONN_ID}/users",
                     group="moesif_segment_sync")
MOESIF_COMPANIES = Asset(name="moesif_companies", uri=f"moesif://{MOESIF_CONN_ID}/companies",
                         group="moesif_segment_sync")
SEGMENT_PROFILES = Asset(name="segment_profiles", uri=f"segment://{SEGMENT_CONN_ID}/identify",
                         group="moesif_segment_sync")
MAX_ACTIVE_RUNS = int(os.environ.get("MOESIF_SEGMENT_MAX_ACTIVE_RUNS", "1"))
WINDOW = "Window"
MODES = "Modes"
WINDOW_RULE = (
    "Leave start and end empty to sync the run's data interval (for a manual run, Airflow's "
    "Data Interval above when specified, else the last complete schedule interval). When both "
    "are set they win over the data interval, except in a backfill: each backfill run always "
    "syncs its own interval. Times are UTC unless they carry an offset.")


def _moment(title: str, example: str, description: str) -> Param:
    # No pattern: the form's date-time picker checks the format before a run exists, and the
    # REST API's and CLI's values (dates too) are checked by check_window, with a clear message.
    return Param(None, type=["null", "string"], format="date-time", title=title,
                 description=f"{description} ISO date or datetime, e.g. {example}. {WINDOW_RULE}",
                 section=WINDOW)


def _switch(title: str, description: str, section: str = MODES) -> Param:
    return Param(False, type=["boolean", "null"], title=title, description=description,
                 section=section)


@dag(
    dag_id="moesif_to_segment",
    # On the clock, or (MOESIF_SEGMENT_SCHEDULE_ASSET) after an upstream Asset's event.
    schedule=(Asset(uri=SETTINGS.schedule_asset) if SETTINGS.schedule_asset
              else CronDataIntervalTimetable(SCHEDULE, timezone="UTC")),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    dagrun_timeout=SETTINGS.run_timeout,
    # One alert per run, not per failed task (docs/operations.md#alerts).
    on_failure_callback=RunAlert(),
    on_success_callback=RunAlert(success=True),
    default_args={"owner": SETTINGS.owner, "retries": 2, "retry_delay": timedelta(minutes=1),
                  "retry_exponential_backoff": True,
                  "execution_timeout": SETTINGS.task_timeout},
    tags=["moesif", "segment", "sync"],
    doc_md=__doc__,
    params={
        "start": _moment("Window start", "2026-11-25T13:00:00Z",
                         "First moment of the window (included), with end."),
        "end": _moment("Window end", "2026-11-25T14:00:00Z",
                       "End of the window (excluded), with start."),
        "allow_long_window": _switch(
            "Allow a long window", "Run a window longer than MOESIF_SEGMENT_MAX_WINDOW (31 "
            "days by default); without it such a run is refused before anything is extracted.",
            WINDOW),
        "dry_run": _switch("Dry run", "Extract, build and batch as usual, send nothing: the "
                           "run page shows what would be sent. Try this first."),
        "full_refresh": _switch("Full refresh", "Ignore the window and identify every user."),
        "force": _switch("Force", "Send even messages whose content Segment already has."),
        "doctor": _switch("Doctor first", "Check the connections and the account first "
                          "(make doctor); a failing check stops the run."),
        "retry_rejects_of": Param(
            None, type=["null", "string"], title="Retry the rejects of run",
            description="A run id (e.g. scheduled__2026-11-25T01:00:00+00:00): read the users "
                        "that run rejected from Moesif again and send them through today's "
                        "mapping, once the cause is fixed. The window is not read.",
            section=MODES),
    },
)
def moesif_to_segment():
    @task
    @stage(audit=AUDIT_CONN_ID)
    def check_window(run, sync):
        """Refuse a window that cannot be meant (ends in the future, too long) before anything
        is extracted, so a typo fails one task, once."""
        return sync.check_window(run)

    @task(inlets=[MOESIF_USERS, MOESIF_COMPANIES])
    @stage(audit=AUDIT_CONN_ID, moesif=MOESIF_CONN_ID, doctor=(MOESIF_CONN_ID, SEGMENT_CONN_ID))
    def extract_users(run, sync, moesif):
        """Stage the window's users and the users of its changed companies."""
        return sync.extract_users(run, moesif)

    @task(inlets=[MOESIF_COMPANIES])
    @stage(audit=AUDIT_CONN_ID, moesif=MOESIF_CONN_ID)
    def extract_companies(run, sync, moesif):
        """Stage the companies changed or seen in the window."""
        return sync.extract_companies(run, moesif)

    @task
    @stage(audit=AUDIT_CONN_ID)
    def transform(run, sync):
        """Join companies onto users and build the messages (in shards) and rejects."""
        return sync.transform(run)

    # Mapped: one task per shard of messages, so workers send in parallel. Every shard of
    # every run takes a slot of the segment_api pool: the send rate holds for the destination.
    @task(pool="segment_api", execution_timeout=SETTINGS.load_timeout())
    @stage(audit=AUDIT_CONN_ID, segment=SEGMENT_CONN_ID)
    def load(run, sync, shard, segment):
        """Send one shard's messages that Segment lacks, writing the ledger as it goes."""
        return sync.load(run, segment, shard)

    @task(outlets=[SEGMENT_PROFILES])
    @stage(audit=AUDIT_CONN_ID)
    def audit(run, sync, users, companies, shards, loads):
        """Sum the shards, write the run record and audit.json; fail when counts do not add up.
        On success, the Segment profiles' Asset event carries the run's counts."""
        from moesif_segment_sync.airflow import context

        report = sync.audit(run, users, companies, list(shards), list(loads))
        figures = {key: report[key] for key in ("considered", "sent", "would_send", "unchanged",
                                                "rejected", "batches", "status")}
        groups = report["counts"]["groups"]
        context.asset_event_extra(SEGMENT_PROFILES, {
            **figures, "run_id": run.run_id, "dry_run": run.params.dry_run,
            "window_start": report["window_start"], "window_end": report["window_end"],
            **({"group_calls": groups} if groups else {})})
        return figures

    users, companies = extract_users(), extract_companies()
    check_window() >> [users, companies]
    shards = transform()
    [users, companies] >> shards
    loads = load.expand(shard=shards)
    audit(users, companies, shards, loads)


moesif_to_segment()
