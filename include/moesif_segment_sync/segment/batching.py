"""Packing identify messages into ``/v1/batch`` requests: greedy, in order, under Segment's
byte and message limits, so the same messages always give the same batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import orjson

_HEAD = b'{"batch":['
_SENT_AT = b'],"sentAt":"'
_TAIL = b'"}'
# The envelope around the messages, with a sentAt of the fixed length it always has.
ENVELOPE_BYTES = len(_HEAD + _SENT_AT + b"2026-11-25T01:00:02.000Z" + _TAIL)


@dataclass(frozen=True)
class Batch:
    """Consecutive messages that fit one request; ``no`` counts from 1 in packing order."""

    no: int
    messages: list[bytes]
    body_bytes: int  # the uncompressed body, sentAt included
    # The staged ``[userId, messageId(, trait mask)]`` of each message (plan.heads), when
    # packed with them.
    heads: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.messages)

    def body(self, sent_at: str) -> bytes:
        return _HEAD + b",".join(self.messages) + _SENT_AT + sent_at.encode() + _TAIL

    def edge_message_ids(self) -> tuple[str, str]:
        """The first and last messageId, for the ledger."""
        return orjson.loads(self.heads[0])[1], orjson.loads(self.heads[-1])[1]

    def ids(self) -> list[tuple[str, str]]:
        """(userId, messageId) of each message, in order: one parse of the joined heads."""
        return [(head[0], head[1]) for head in self.parsed_heads()]

    def parsed_heads(self) -> list[list]:
        """Each message's head, parsed: ``[userId, messageId]`` and, for an identify staged
        with it, its trait mask."""
        return orjson.loads(b"[" + b",".join(self.heads) + b"]")


def pack(messages: Iterable[bytes], *, max_bytes: int, max_messages: int,
         heads: Iterable[bytes] | None = None) -> Iterator[Batch]:
    """Greedy packing in order: the same messages always give the same batches. ``heads``,
    one per message in the same order, are carried along into each message's batch.

    Every message is at most 32 KB (the transform rejects larger ones), so one
    always fits an empty batch under any allowed ``max_bytes``.
    """
    pairs = zip(messages, heads, strict=True) if heads is not None else zip(
        messages, repeat(None))
    current: list[bytes] = []
    current_heads: list[bytes] = []
    size = ENVELOPE_BYTES
    number = 0
    for message, head in pairs:
        added = len(message) + (1 if current else 0)
        if current and (size + added > max_bytes or len(current) >= max_messages):
            number += 1
            yield Batch(number, current, size, current_heads)
            current, current_heads, size, added = [], [], ENVELOPE_BYTES, len(message)
        current.append(message)
        if head is not None:
            current_heads.append(head)
        size += added
    if current:
        yield Batch(number + 1, current, size, current_heads)
