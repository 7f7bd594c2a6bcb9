"""Alerts through Airflow's notifiers: one readable message per run.

``RunAlert`` is a ``BaseNotifier`` that the DAG sets as its run-level ``on_failure_callback``
(and ``on_success_callback``), so a run alerts once, however many tasks failed. It reads the
run's record from the audit store (the failing task's own record, or the audit's verdict:
a reject share over the threshold, counts that do not add up) and writes one message: the
window, the counts, the error, the most frequent reject reasons and a link to the run page.

Delivery is an Airflow notifier that the user names in ``MOESIF_SEGMENT_NOTIFIER``, with its
own arguments, e.g. the SMTP provider's::

    {"class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
     "to": "data-team@example.com", "from_email": "airflow@example.com",
     "smtp_conn_id": "smtp_default"}

or Slack's (``SlackNotifier``, ``SlackWebhookNotifier``) or Apprise's when installed. The
message goes into the notifier's own fields: ``subject`` or ``title`` for the first line,
``html_content``, ``text``, ``body`` or ``message`` for the rest. Without a notifier the alert
is one line in the log.
"""

from __future__ import annotations

import html
import importlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from ..errors import ConfigError
from ..settings import SyncSettings, load_settings

log = logging.getLogger(__name__)

_SUBJECT_FIELDS = ("subject", "title")
_BODY_FIELDS = ("html_content", "text", "body", "message")
_TOP_REASONS = 5


@dataclass(frozen=True)
class Alert:
    subject: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def html(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


class RunAlert(BaseNotifier):
    """The run's alert, delivered by the notifier of ``MOESIF_SEGMENT_NOTIFIER``."""

    template_fields = ()

    def __init__(self, *, success: bool = False) -> None:
        super().__init__()
        self.success = success

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the message is composed from data, never read as a template."""

    def notify(self, context: dict[str, Any]) -> None:
        settings = load_settings()
        if self.success and not settings.notify_on_success:
            return
        alert = compose(context, settings, success=self.success)
        (log.info if self.success else log.error)("%s", alert.subject)
        _legacy_callback(settings, context, success=self.success)
        if settings.notifier:
            deliver(settings.notifier, alert, context)


def compose(context: dict[str, Any], settings: SyncSettings, *, success: bool) -> Alert:
    """The message, from the run's record in the audit store (or, without one, from what
    Airflow says)."""
    from ..store import history
    from ..store.audit import AuditStore, RunKey
    from . import context as run_context

    dag_id, run_id = _run_of(context)
    key = RunKey(dag_id, run_id)
    store = AuditStore(run_context.audit_url())
    try:
        record = store.run(key)
        kinds = history.reject_kinds(store, key, limit=_TOP_REASONS) if record else []
    finally:
        store.close()
    outcome = "succeeded" if success else "failed"
    if record is None:
        reason = context.get("reason") or "see the task logs"
        return Alert(f"{dag_id} {outcome}: run {run_id}",
                     [f"Run {run_id} of {dag_id} {outcome} ({reason}); it has no record in the "
                      "audit store.", f"Run page: {_link(dag_id, run_id)}"])
    where = f" in {record['failed_task']}" if record.get("failed_task") else ""
    lines = [f"Run {run_id} of {dag_id} {outcome}{where}.",
             f"Window: {_moment(record['window_start'])} to {_moment(record['window_end'])} "
             f"({record['window_source']}, {record['mode']}"
             f"{', dry run' if record['dry_run'] else ''})"]
    if record.get("error"):
        lines.append(f"Error: {record['error']}")
    sent = (f"would send {record['would_send']:,}" if record["dry_run"]
            else f"sent {record['sent']:,}")
    lines.append(f"Users: considered {record['considered']:,}, {sent}, unchanged "
                 f"{record['unchanged']:,}, rejected {record['rejected']:,}; batches "
                 f"{record['batches']:,}")
    if kinds:
        lines.append("Top reject reasons: " + ", ".join(f"{kind} {n:,}" for kind, n in kinds))
    lines += [f"Note: {note}" for note in record.get("notes") or []]
    lines.append(f"Run page: {_link(dag_id, run_id)}")
    counts = f"{record['rejected']:,} rejected of {record['considered']:,}"
    subject = f"{dag_id} {outcome}{where}: {_moment(record['window_start'])}, {counts}"
    return Alert(subject, lines)


def deliver(spec: dict[str, Any], alert: Alert, context: dict[str, Any]) -> None:
    """Build the named notifier with its arguments and the message, and call it."""
    arguments = {name: value for name, value in spec.items() if name != "class"}
    notifier_class = _import(spec["class"])
    accepted = inspect.signature(notifier_class).parameters
    subject = next((name for name in _SUBJECT_FIELDS if name in accepted), None)
    body = next((name for name in _BODY_FIELDS if name in accepted), None)
    if body is None:
        raise ConfigError(f"MOESIF_SEGMENT_NOTIFIER: {spec['class']} takes none of "
                          f"{', '.join(_BODY_FIELDS)}, so the alert has nowhere to go")
    if subject is not None:
        arguments[subject] = alert.subject
    arguments[body] = alert.html if body == "html_content" else (
        alert.text if subject is not None else f"{alert.subject}\n{alert.text}")
    # notify(), not __call__: the message holds data from Moesif, never to be read as a
    # Jinja template.
    notifier_class(**arguments).notify(context)


def _import(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"MOESIF_SEGMENT_NOTIFIER: cannot import {path!r} ({exc}); install "
                          "the provider that has it") from None
    if not (isinstance(found, type) and issubclass(found, BaseNotifier)):
        raise ConfigError(f"MOESIF_SEGMENT_NOTIFIER: {path!r} is not an Airflow notifier "
                          "(a BaseNotifier subclass)")
    return found


def _legacy_callback(settings: SyncSettings, context: dict[str, Any], *, success: bool) -> None:
    target = settings.on_failure_callback
    if success or not target:
        return
    log.warning("MOESIF_SEGMENT_ON_FAILURE_CALLBACK is deprecated and will go: name an Airflow "
                "notifier in MOESIF_SEGMENT_NOTIFIER instead")
    module_name, _, function_name = target.partition(":")
    try:
        callback = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"MOESIF_SEGMENT_ON_FAILURE_CALLBACK {target!r} cannot be "
                          f"imported: {exc}") from None
    callback(context)


def _run_of(context: dict[str, Any]) -> tuple[str, str]:
    dag_run = context.get("dag_run")
    if dag_run is not None:
        return dag_run.dag_id, dag_run.run_id
    return context["dag"].dag_id, context["run_id"]


def _link(dag_id: str, run_id: str) -> str:
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")
    return f"{base}/segment-sync/ui/runs/{quote(run_id, safe='')}?dag_id={quote(dag_id)}"


def _moment(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)
