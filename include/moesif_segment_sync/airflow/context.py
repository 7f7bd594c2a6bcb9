"""A task's run context from Airflow: the ``Run``, the connections, and Airflow's errors.

Task bodies reach it through ``stage`` (the decorator the DAG uses); the CLI and the
doctor read the same connections through the endpoint helpers here.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow.sdk import BaseHook, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

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

log = logging.getLogger(__name__)

MOESIF_CONN_ID = "moesif_default"
SEGMENT_CONN_ID = "segment_default"
AUDIT_CONN_ID = "moesif_segment_audit"
DEFAULT_HOSTS = {"moesif": "https://api.moesif.com", "segment": "https://api.segment.io"}
_EXAMPLES = {
    "moesif": '{"conn_type": "http", "host": "https://api.moesif.com", '
              '"password": "<Management API key>"}',
    "segment": '{"conn_type": "http", "host": "https://api.segment.io", '
               '"password": "<source write key>"}',
}


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def _find_connection(conn_id: str):  # noqa: ANN202 - an Airflow Connection or None
    """A connection from wherever Airflow keeps it. Inside a task the SDK asks the
    supervisor; outside one (the CLI, the api-server's plugin) it only sees environment
    variables and secrets backends, so the metadata database is asked as well."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    try:
        from airflow.models.connection import Connection
    except ImportError:  # a worker with only the task SDK
        return None
    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:  # noqa: BLE001 - no metadata database here (a bare CLI)
        log.debug("metadata database not consulted for %s: %s", conn_id, exc)
        return None


def _connection(conn_id: str, api: str):  # noqa: ANN202 - an Airflow Connection
    conn = _find_connection(conn_id)
    if conn is None:
        raise ConfigError(
            f"Airflow connection {conn_id!r} is not set: add it under Admin > Connections, or "
            f"export AIRFLOW_CONN_{conn_id.upper()}='{_EXAMPLES[api]}'")
    return conn


def _base_url(conn, api: str) -> str:  # noqa: ANN001
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_HOSTS[api]
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host.rstrip("/")


def moesif_endpoint(conn_id: str = MOESIF_CONN_ID) -> Endpoint:
    conn = _connection(conn_id, "moesif")
    if not conn.password:
        raise ConfigError(f"Airflow connection {conn_id!r} has no password: set it to the "
                          "Moesif Management API key (scopes read:users and read:companies)")
    mask_secret(conn.password)
    return Endpoint(_base_url(conn, "moesif"), conn.password)


def segment_endpoint(conn_id: str = SEGMENT_CONN_ID) -> Endpoint:
    conn = _connection(conn_id, "segment")
    key = conn.password or (conn.extra_dejson or {}).get("write_key")
    if not key:
        raise ConfigError(f"Airflow connection {conn_id!r} has no write key: set its "
                          "password (or extra write_key) to the Segment source's write key")
    mask_secret(key)
    return Endpoint(_base_url(conn, "segment"), key)


def audit_url(conn_id: str = AUDIT_CONN_ID) -> str:
    """The audit store's SQLAlchemy URL: the optional connection, else SQLite in AIRFLOW_HOME."""
    conn = _find_connection(conn_id)
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


def on_failure(context: dict) -> None:
    """The DAG's ``on_failure_callback``: a one-line alert in the log, then the user's hook.

    Set ``MOESIF_SEGMENT_ON_FAILURE_CALLBACK=package.module:function`` to route
    failures to Slack, email or a pager; the function gets Airflow's context.
    """
    ti = context.get("task_instance")
    log.error("moesif_to_segment failed: run %s, task %s: %s",
              context["dag_run"].run_id, getattr(ti, "task_id", "?"), context.get("exception"))
    target = load_settings().on_failure_callback
    if target:
        module_name, _, function_name = target.partition(":")
        try:
            callback = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"MOESIF_SEGMENT_ON_FAILURE_CALLBACK {target!r} cannot be "
                              f"imported: {exc}") from None
        callback(context)
