"""A stand-in for a home-made alert function: the tests' MOESIF_SEGMENT_ON_FAILURE_CALLBACK
(the deprecated setting that MOESIF_SEGMENT_NOTIFIER replaces)."""

from __future__ import annotations

RECEIVED: list[dict] = []


def record(context: dict) -> None:
    dag_run = context.get("dag_run")
    RECEIVED.append({"run_id": dag_run.run_id if dag_run else context["run_id"],
                     "reason": context.get("reason")})
