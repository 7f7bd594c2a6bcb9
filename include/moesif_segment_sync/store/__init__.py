"""The store: what each run did, kept in a SQL database. ``audit`` writes it (run records,
the batch ledger, rejects, per-user state for change detection), ``history`` reads it for
the UI, the JSON API and the CLI, and ``report`` renders a run's summary for task logs."""

from . import history
from .audit import AuditStore, BatchEntry, RunKey, check_accounting, now
from .report import summary_table

__all__ = ["AuditStore", "BatchEntry", "RunKey", "check_accounting", "history", "now",
           "summary_table"]
