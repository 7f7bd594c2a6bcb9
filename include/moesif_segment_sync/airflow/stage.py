"""``stage``: what every task of the DAG does before its one line of work.

A task body decorated with ``@stage(...)`` is called with the run (``Run``, from Airflow's
context), the ``sync`` module, and the endpoints of the connections it names. Nothing heavy
is imported until the task runs, so the DAG file stays cheap to parse. Errors that a retry
cannot fix (a bad setting or param, a 4xx, an accounting breach) fail the task at once,
and a task that fails for good leaves the run's failed record in the audit store, so every
run is in the history.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


def _as_json(value: Any) -> Any:
    """A stage's typed summary (or list of them) as the JSON that XCom keeps."""
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else value


def stage(*, audit: str, moesif: str | None = None, segment: str | None = None,
          doctor: tuple[str, str] | None = None
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the body as ``body(run, sync, *args, [moesif=Endpoint], [segment=Endpoint])``,
    reading the run's audit store from connection ``audit``. ``segment`` is ``None`` on a dry
    run, which needs no Segment connection. With ``doctor`` (the Moesif and Segment
    connection ids), a run whose ``doctor`` param is set runs the doctor's checks first."""

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(body)
        def task_body(*args: Any, **kwargs: Any) -> Any:
            from .. import sync
            from . import context

            context.use_airflow_metrics()
            try:
                with context.failing_fast():
                    run = context.current_run(audit)
                    if doctor is not None and run.params.doctor:
                        context.run_doctor(*doctor)
                    if moesif is not None:
                        kwargs["moesif"] = context.moesif_endpoint(moesif)
                    if segment is not None:
                        kwargs["segment"] = (None if run.params.dry_run
                                             else context.segment_endpoint(segment))
                    result = body(run, sync, *args, **kwargs)
                    context.report_lineage(body.__name__, result, **({"moesif_conn_id": moesif}
                                                                     if moesif else {}))
                    return _as_json(result)
            except Exception as error:
                if context.is_last_attempt(error):
                    context.record_failure(body.__name__, error, audit)
                raise

        # Airflow binds a task's arguments to its callable's signature: the task takes only
        # what the body takes beyond the run, sync and the endpoints given here.
        signature = inspect.signature(body)
        task_body.__signature__ = signature.replace(parameters=[
            parameter for name, parameter in signature.parameters.items()
            if name not in ("run", "sync", "moesif", "segment")])
        return task_body

    return decorate
