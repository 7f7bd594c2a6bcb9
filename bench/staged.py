"""The staged messages, for every part of the benchmark that reads or copies them.

The benchmark depends on one detail of the staging layout: where the
transform leaves its identify messages (one gzip JSON Lines file per shard,
``staging.messages_file(n)``, each shard one mapped load task, with its
``staging.heads_file(n)`` beside it). It is used only here, so a change of
layout is a change of this module; the stage calls themselves are all in
``worker``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from moesif_segment_sync.pipeline import plan, staging
from moesif_segment_sync.pipeline.staging import Staging


def message_files(stage: Staging) -> list[str]:
    """The run's message files, in shard order."""
    names: list[str] = []
    while stage.exists(staging.messages_file(len(names))):
        names.append(staging.messages_file(len(names)))
    return names


def messages(stage: Staging) -> Iterator[bytes]:
    """The run's identify messages, one serialized message per item, in staged order."""
    for name in message_files(stage):
        yield from stage.lines(name)


def messages_by_user(stage: Staging) -> Iterator[tuple[str, bytes]]:
    """(userId, message) of each identify message, in staged order: the userId is read from
    the shard's heads file, line for line with its messages, so no message is parsed."""
    for shard, name in enumerate(message_files(stage)):
        heads = stage.lines(staging.heads_file(shard))
        for head, line in zip(heads, stage.lines(name), strict=True):
            yield orjson.loads(head)[0], line


def write_messages(stage: Staging, lines: Iterable[bytes]) -> int:
    """Stage ``lines`` as the run's messages, all in shard 0, with their heads, as if its
    transform had."""
    with stage.writer(staging.messages_file(0)) as out:
        for line in lines:
            out.write_line(line)
    # The heads as a load reads them from messages staged without any.
    with stage.writer(staging.heads_file(0)) as heads:
        for head in plan.heads(stage, 0):
            heads.write_line(head)
    return out.lines


def copy_messages(source: Staging, target: Staging) -> None:
    """Give ``target`` every message shard of ``source`` and its heads (file copies: nothing
    re-encoded)."""
    target.fs.makedirs(target.dir, exist_ok=True)
    for shard, name in enumerate(message_files(source)):
        for copied in (name, staging.heads_file(shard)):
            target.fs.copy(source.path(copied), target.path(copied))
