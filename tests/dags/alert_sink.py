"""A stand-in for a Slack or email notifier: the tests' MOESIF_SEGMENT_ON_FAILURE_CALLBACK."""

from __future__ import annotations

RECEIVED: list[dict] = []


def record(context: dict) -> None:
    RECEIVED.append({"run_id": context["dag_run"].run_id,
                     "task_id": context["task_instance"].task_id,
                     "exception": str(context.get("exception"))})
