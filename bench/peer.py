"""The peer: the same identify messages sent through segment-analytics-python.

The library is what the README chose not to use (``docs/segment-api.md``):
it queues messages for a background thread and drops them when the queue is
full. The benchmark gives it its best case: every message is parsed into
the library's arguments before the clock starts, and the parsed objects are
frozen out of the garbage collector, so the clock sees only what the library
does, from the first ``identify`` to ``flush()`` returning. What was
delivered is counted by the stand-in, not by the library.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from segment.analytics import Client

from moesif_segment_sync.settings import Endpoint


class PeerSend:
    """Prepared on construction (untimed); calling it sends everything and flushes."""

    def __init__(self, lines: Iterable[bytes], segment: Endpoint, options: dict[str, Any]) -> None:
        self._calls = [_identify_args(orjson.loads(line)) for line in lines]
        gc.freeze()  # a real caller builds each message just before enqueueing it
        # The consumer thread starts here, idle until the first message.
        self._client = Client(segment.secret, host=segment.url, **options)
        self._options = options

    def __call__(self) -> dict[str, Any]:
        refused = 0
        started = time.perf_counter()
        for args in self._calls:
            accepted, _ = self._client.identify(**args)
            refused += not accepted
        enqueued_s = time.perf_counter() - started
        self._client.flush()  # the consumer thread exits with the process (atexit), untimed
        return {"offered": len(self._calls), "refused_queue_full": refused,
                "enqueue_seconds": round(enqueued_s, 3), "options": self._options}


def _identify_args(message: dict[str, Any]) -> dict[str, Any]:
    """A built identify message as ``Client.identify`` keyword arguments."""
    return {"user_id": message["userId"], "traits": message["traits"],
            "context": message["context"], "message_id": message["messageId"],
            "timestamp": datetime.fromisoformat(message["timestamp"])}
