"""``--rate-check``: with a send rate configured, does the load hold it?

The real load runs (in a worker, like the timed loads) with ``send_rate``
set, on enough staged messages to last the whole check at that rate. The
Segment stand-in's request log has the arrival time and size of every
batch; the rate achieved is the events sent before the last batch divided by
the time from the first arrival to the last. That is what ``RateLimiter``
promises: each batch leaves when the events before it are due.

A batch arrives all at once, so the limiter holds an average and not a
ceiling per second; the most events that arrived within any one second is
reported beside it.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from moesif_segment_sync.pipeline.staging import Staging

from . import staged

TOLERANCE = 0.02


def messages_needed(rate: float, seconds: float, batch_messages: int) -> int:
    """Enough for ``seconds`` at ``rate``, plus the batch that is due when they are over."""
    return int(rate * seconds) + batch_messages


def copy_first(source: Staging, target: Staging, count: int) -> int:
    """Stage the first ``count`` messages of ``source`` as ``target``'s messages."""
    return staged.write_messages(target, islice(staged.messages(source), count))


def analyse(log: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """The rate the stand-in saw, from the arrival times of the accepted batches."""
    arrivals = sorted((entry["at"], entry["n_messages"]) for entry in log
                      if entry["path"] == "/v1/batch" and entry["status"] == 200)
    if len(arrivals) < 2:
        return {"batches": len(arrivals), "passed": False}
    span = arrivals[-1][0] - arrivals[0][0]
    achieved = sum(count for _, count in arrivals[:-1]) / span
    busiest = max(sum(count for moment, count in arrivals if start <= moment < start + 1.0)
                  for start, _ in arrivals)
    error = achieved / rate - 1
    return {"configured_events_per_s": rate, "achieved_events_per_s": round(achieved, 2),
            "error": round(error, 5), "span_s": round(span, 3), "batches": len(arrivals),
            "events": sum(count for _, count in arrivals),
            "most_events_in_one_second": busiest, "passed": abs(error) <= TOLERANCE}
