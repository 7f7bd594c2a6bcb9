"""A local stand-in for Segment's HTTP Tracking API batch endpoint (segment-api.md).

``POST /v1/batch`` with Basic auth (the write key as user, no password),
gzip bodies, and Segment's limits enforced the way Segment enforces them: a
message over 32 KB or a body over 500 KB fails the whole request with 400,
while messages past 2,500 in a batch, messages without a type or a user (or a
group call without a groupId), and repeated messageIds are dropped quietly
behind a 200. The stand-in counts every quiet drop, so a test can prove the
sender never relied on one.

Messages are kept as the compact JSON the size check already produced, which
keeps a benchmark's million messages affordable; the ``delivered`` and
``accepted`` views parse them on demand. With ``keep_messages=False``
(``--ids-only``) it keeps only the messageIds and the counts: ten million
messages of about 1.5 KB would not fit in memory.

Run it on its own with ``python -m sandbox.segment --help``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import threading
from typing import Any

from ._http import HttpError, Request, Response, StandInServer, json_response, serve_until_signalled
from ._json import dumps_exact, loads_lenient

MAX_BODY_BYTES = 512_000
MAX_MESSAGE_BYTES = 32_768
MAX_BATCH_MESSAGES = 2_500
MAX_MESSAGE_ID_CHARS = 100

_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed", 429: "rate_limited"}


def _present(value: Any) -> bool:
    """Whether a userId or anonymousId is there: a non-blank string or a number."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_deliverable(message: Any) -> bool:
    """What Segment keeps: an object with a type and a userId or anonymousId; a group call
    also needs its groupId."""
    return (isinstance(message, dict) and isinstance(message.get("type"), str)
            and bool(message["type"].strip())
            and (_present(message.get("userId")) or _present(message.get("anonymousId")))
            and (message["type"] != "group" or _present(message.get("groupId"))))


class SegmentStandIn(StandInServer):
    """Segment's batch endpoint on loopback, recording what it accepted and what it dropped."""

    name = "segment"
    retry_headers = ("Retry-After", "X-RateLimit-Reset")

    def __init__(self, write_key: str = "test-write-key", *, port: int = 0,
                 verbose: bool = False, keep_messages: bool = True) -> None:
        self.write_key = write_key
        self.keep_messages = keep_messages
        self._state_lock = threading.Lock()
        # userId -> Segment's message: a request holding one of them is refused whole with
        # 400, as Segment refuses a batch with an invalid message (tests of the load's split).
        self.refused_users: dict[str, str] = {}
        self._reset_state()
        super().__init__(port, verbose=verbose)

    def _reset_state(self) -> None:
        self._delivered: dict[str, bytes | None] = {}  # None: keep_messages is off
        self._accepted: list[bytes] = []
        self._n_accepted = 0
        self._counts = dict.fromkeys(
            ("batches", "messages_received", "duplicates", "dropped_over_limit",
             "dropped_invalid", "missing_sent_at", "missing_message_id", "long_message_ids"), 0)

    # ------------------------------------------------------------ what was received

    @property
    def delivered(self) -> dict[str, dict[str, Any]]:
        """messageId -> message, first copy of each messageId, in arrival order."""
        self._check_kept()
        with self._state_lock:
            items = list(self._delivered.items())
        return {message_id: loads_lenient(blob) for message_id, blob in items}

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Every message Segment kept, duplicates included, in arrival order."""
        self._check_kept()
        with self._state_lock:
            blobs = list(self._accepted)
        return [loads_lenient(blob) for blob in blobs]

    @property
    def duplicates(self) -> int:
        """Accepted messages whose messageId had been delivered before."""
        return self._counts["duplicates"]

    @property
    def dropped(self) -> int:
        """Messages quietly dropped: past 2,500 in a batch, or without a type or a user."""
        return self._counts["dropped_over_limit"] + self._counts["dropped_invalid"]

    def stats(self) -> dict[str, int]:
        """All the counters, for tests and benchmarks that only need numbers."""
        with self._state_lock:
            return {"requests": len(self.log.snapshot()), "accepted": self._n_accepted,
                    "delivered": len(self._delivered), "dropped": self.dropped, **self._counts}

    def clear(self) -> None:
        """Forget every message, counter, log entry and pending fault."""
        with self._state_lock:
            self._reset_state()
        self.clear_log()
        self.clear_faults()

    def handle_control(self, request: Request) -> Response:
        route = (request.method, request.segments[1:])
        if route == ("GET", ("delivered",)):
            self._check_kept()
            with self._state_lock:
                blobs = list(self._delivered.values())
            return json_response(b"[" + b",".join(blobs) + b"]")
        if route == ("GET", ("stats",)):
            return json_response(self.stats())
        if route == ("POST", ("clear",)):
            self.clear()
            return json_response({"cleared": True})
        return super().handle_control(request)

    # ------------------------------------------------------------ the API

    def error_payload(self, status: int, message: str) -> dict[str, Any]:
        code = _ERROR_CODES.get(status, "server_error" if status >= 500 else "error")
        return {"code": code, "message": message}

    def describe(self, request: Request) -> dict[str, Any]:
        try:
            body_bytes: int | None = len(request.content)
        except HttpError:
            body_bytes = None
        payload = request.json_or_none() if body_bytes is not None else None
        envelope = payload if isinstance(payload, dict) else {}
        batch = envelope.get("batch")
        return {"n_messages": len(batch) if isinstance(batch, list) else None,
                "body_bytes": body_bytes, "wire_bytes": len(request.body),
                "gzip": request.is_gzip, "sent_at": envelope.get("sentAt")}

    def handle_api(self, request: Request) -> Response:
        if request.segments != ("v1", "batch"):
            raise HttpError(404, f"Not found: {request.path}; the stand-in serves POST /v1/batch")
        if request.method != "POST":
            raise HttpError(405, f"{request.method} is not allowed on /v1/batch")
        self._authorize(request)
        if len(request.content) > MAX_BODY_BYTES:
            raise HttpError(400, f"Request body is {len(request.content)} bytes, over the "
                                 f"{MAX_BODY_BYTES}-byte (500 KB) limit")
        envelope = request.json
        batch = envelope.get("batch") if isinstance(envelope, dict) else None
        if not isinstance(batch, list):
            raise HttpError(400, 'The body must be a JSON object with a "batch" list')
        blobs = [dumps_exact(message) for message in batch]
        for position, blob in enumerate(blobs):
            if len(blob) > MAX_MESSAGE_BYTES:
                raise HttpError(400, f"Message {position} is {len(blob)} bytes, over the "
                                     f"{MAX_MESSAGE_BYTES}-byte (32 KB) limit")
        for message in batch:
            user_id = message.get("userId") if isinstance(message, dict) else None
            if user_id in self.refused_users:
                raise HttpError(400, self.refused_users[user_id])
        over_limit = max(0, len(batch) - MAX_BATCH_MESSAGES)
        sent_at = envelope.get("sentAt")
        with self._state_lock:
            counts = self._counts
            counts["batches"] += 1
            counts["messages_received"] += len(batch)
            counts["dropped_over_limit"] += over_limit
            counts["missing_sent_at"] += not (isinstance(sent_at, str) and sent_at.strip())
            kept = self._keep(batch[:MAX_BATCH_MESSAGES], blobs)
        return json_response({"success": True}, accepted=kept, dropped=len(batch) - kept)

    def _keep(self, messages: list[Any], blobs: list[bytes]) -> int:
        """Record the deliverable messages (caller holds the lock); returns how many."""
        counts, kept = self._counts, 0
        for message, blob in zip(messages, blobs, strict=False):
            if not _is_deliverable(message):
                counts["dropped_invalid"] += 1
                continue
            kept += 1
            self._n_accepted += 1
            if self.keep_messages:
                self._accepted.append(blob)
            message_id = message.get("messageId")
            if not isinstance(message_id, str) or not message_id:
                # Segment assigns one; a stand-in key keeps the message visible.
                counts["missing_message_id"] += 1
                message_id = f"sandbox-generated-{self._n_accepted}"
            elif len(message_id) > MAX_MESSAGE_ID_CHARS:
                counts["long_message_ids"] += 1
            if message_id in self._delivered:
                counts["duplicates"] += 1
            else:
                self._delivered[message_id] = blob if self.keep_messages else None
        return kept

    def _check_kept(self) -> None:
        if not self.keep_messages:
            raise HttpError(409, "this stand-in keeps only messageIds and counts "
                                 "(keep_messages=False, --ids-only): no messages to show")

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        try:
            credentials = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            credentials = None
        if scheme.lower() != "basic" or credentials != f"{self.write_key}:":
            raise HttpError(401, "Unauthorized: send the write key as the Basic auth user name "
                                 "with an empty password")


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.segment``: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-key", default="test-write-key")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ids-only", dest="keep_messages", action="store_false",
                        help="keep only the messageIds and counts, not the messages")
    args = parser.parse_args(argv)
    serve_until_signalled(SegmentStandIn(args.write_key, port=args.port, verbose=True,
                                         keep_messages=args.keep_messages))


if __name__ == "__main__":
    main()
