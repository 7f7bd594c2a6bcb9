"""A task's run context from Airflow: the ``Run``, the connections, and Airflow's errors.

Task bodies reach it through ``stage`` (the decorator the DAG uses); the CLI and the
doctor read the same connections through the endpoint helpers here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from .. import metrics
from ..errors import (
    AccountingError,
    ConfigError,
    MoesifError,
    RejectThresholdError,
    SegmentError,
)
from ..settings import Endpoint, load_settings
from ..sync import Run
from ..window import RunParams, resolve_window
from .hooks import MoesifHook, SegmentHook, find_connection

log = logging.getLogger(__name__)

MOESIF_CONN_ID = "moesif_default"
SEGMENT_CONN_ID = "segment_default"
AUDIT_CONN_ID = "moesif_segment_audit"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def moesif_endpoint(conn_id: str = MOESIF_CONN_ID) -> Endpoint:
    return MoesifHook(conn_id).endpoint()


def segment_endpoint(conn_id: str = SEGMENT_CONN_ID) -> Endpoint:
    return SegmentHook(conn_id).endpoint()


def audit_url(conn_id: str = AUDIT_CONN_ID) -> str:
    """The audit store's SQLAlchemy URL: the optional connection, else SQLite in AIRFLOW_HOME."""
    conn = find_connection(conn_id)
    if conn is None:
        return f"sqlite:///{airflow_home() / 'moesif_segment_audit.db'}"
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    if conn.password:
        mask_secret(conn.password)
    uri = conn.get_uri()
    # Airflow names PostgreSQL "postgres"; SQLAlchemy 2 only knows "postgresql".
    return "postgresql" + uri[len("postgres"):] if uri.startswith("postgres://") else uri


def staging_root(configured: str) -> str:
    return configured or (airflow_home() / "moesif_segment_staging").as_uri()


def current_run(audit_conn_id: str = AUDIT_CONN_ID, *, ignore_params: bool = False) -> Run:
    """The ``Run`` of the task being executed, from Airflow's context (``ignore_params``: as
    if no param were set, to record a run whose params are bad)."""
    context = get_current_context()
    dag_run = context["dag_run"]
    settings = load_settings()
    params = RunParams() if ignore_params else RunParams.from_params(dict(context["params"]))
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    window = resolve_window(params, interval_start=context.get("data_interval_start"),
                            interval_end=context.get("data_interval_end"),
                            run_after=dag_run.run_after, schedule=settings.schedule,
                            backfill=run_type == "backfill")
    return Run(dag_id=dag_run.dag_id, run_id=dag_run.run_id, mode=run_type,
               window=window, params=params, settings=settings,
               staging_root=staging_root(settings.staging_root),
               audit_url=audit_url(audit_conn_id))


def run_doctor(moesif_conn_id: str = MOESIF_CONN_ID,
               segment_conn_id: str = SEGMENT_CONN_ID) -> None:
    """The doctor's checks (without --send-test) as the run's first step: its report goes to
    the task log, and a failing check fails the run before anything is extracted."""
    from ..ops import doctor

    report = doctor.run(resolve_moesif=lambda: moesif_endpoint(moesif_conn_id),
                        resolve_segment=lambda: segment_endpoint(segment_conn_id))
    log.info("doctor\n%s", doctor.render_text(report))
    failing = [f.check for f in report.findings if f.status is doctor.Status.FAIL]
    if failing:
        raise ConfigError(f"the doctor found failing checks: {', '.join(failing)} "
                          "(each with its fix in the log above)")


def asset_event_extra(asset: object, extra: dict) -> None:
    """The ``extra`` of the Asset event this task emits for ``asset`` when it succeeds."""
    get_current_context()["outlet_events"][asset].extra = extra


def report_lineage(task: str, result: Any, moesif_conn_id: str = MOESIF_CONN_ID,
                   segment_conn_id: str = SEGMENT_CONN_ID) -> None:
    """What the task read from Moesif or updated in Segment, with its counts, for lineage
    tools (``lineage``): a no-op unless a lineage reader such as OpenLineage is installed."""
    try:
        _report_lineage(task, result, moesif_conn_id, segment_conn_id)
    except Exception as exc:  # noqa: BLE001 - lineage is a by-product: it never fails a sync
        log.warning("lineage not reported: %s: %s", type(exc).__name__, str(exc)[:300])


def _report_lineage(task: str, result: Any, moesif_conn_id: str, segment_conn_id: str) -> None:
    from ..summaries import ExtractedCompanies, ExtractedUsers
    from . import lineage

    users, companies = (f"moesif://{moesif_conn_id}/users",
                        f"moesif://{moesif_conn_id}/companies")
    if isinstance(result, ExtractedUsers):
        lineage.report(MoesifHook(moesif_conn_id), inputs={
            users: {"users": result.users_in_window + result.users_via_company,
                    "users_via_company": result.users_via_company},
            companies: {"companies": result.user_companies}})
    elif isinstance(result, ExtractedCompanies):
        lineage.report(MoesifHook(moesif_conn_id),
                       inputs={companies: {"companies": result.companies}})
    elif task == "audit" and isinstance(result, dict):
        lineage.report(SegmentHook(segment_conn_id),
                       outputs={f"segment://{segment_conn_id}/identify": result})


def use_airflow_metrics() -> None:
    """Send the sync's counters and timers (``metrics``) through Airflow's ``Stats``: StatsD
    or OpenTelemetry, as ``[metrics]`` configures it, with Airflow's prefix in front."""
    from airflow.sdk.observability import stats

    metrics.use(stats)


def is_last_attempt(error: BaseException) -> bool:
    """Whether the task fails for good with ``error``: it is not to be retried, or it was the
    task's last try."""
    ti = get_current_context()["ti"]
    return isinstance(error, AirflowFailException) or ti.try_number > ti.max_tries


def record_failure(task_id: str, error: BaseException, audit_conn_id: str) -> None:
    """Write the run's failed record (``sync.record_failure``), so the history shows a run
    that never reached its audit. A store that cannot take it is logged, never raised over
    the task's own error."""
    from .. import sync

    context = get_current_context()
    try:
        try:
            run = current_run(audit_conn_id)
        except ConfigError:  # bad params: the record still shows the run, its window unset
            run = current_run(audit_conn_id, ignore_params=True)
        shards = context["ti"].xcom_pull(task_ids="transform") if task_id in (
            "load", "audit") else None
        text = str(error).strip().splitlines()
        sync.record_failure(run, task_id, (text[0] if text else type(error).__name__)[:500],
                            started_at=context["dag_run"].start_date,
                            built=shards[0] if shards else None)
    except Exception as exc:  # noqa: BLE001 - the task's own error is the one to raise
        log.warning("the run's failure could not be recorded in the audit store: %s: %s",
                    type(exc).__name__, str(exc)[:300])


@contextmanager
def failing_fast() -> Iterator[None]:
    """Errors that a retry cannot fix fail the task at once instead of using up its retries."""
    try:
        yield
    except (ConfigError, AccountingError, RejectThresholdError, SegmentError) as exc:
        raise AirflowFailException(str(exc)) from exc
    except MoesifError as exc:
        if exc.status < 500:  # a key, a scope, a subscription: not fixed by waiting
            raise AirflowFailException(str(exc)) from exc
        raise
