"""The load plan of one shard: which of its staged messages Segment already has.

A message whose messageId is the last one Segment accepted for its user is
``unchanged`` and is not sent again (unless ``force``). The plan keeps those
messages' line numbers in ``messages_file(shard)`` as ranges, so the load
streams the staged messages once and skips them: nothing is copied. It is
staged as plain JSON beside the messages (``load_plan-00000.json``) and
names the transform it was made for, so a retried load of the same
transform finds it, selects the same lines and packs the same batches.

Who each message is for comes from the shard's heads file (``[userId,
messageId]`` per line, and an identify's trait mask, written by the transform),
never from parsing the messages themselves.

A shard with group calls (``staging.groups_file``) is planned as if they followed
its identify messages: their lines are numbered on after the last identify's, and
a group call is unchanged when its messageId is the last one Segment accepted for
that user's group call (``accepted``'s ``group``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import TypeVar

import orjson

from .. import codec
from ..chunking import chunks
from . import staging
from .mapping import is_group, trait_names, with_null_traits
from .staging import Staging

T = TypeVar("T")

# Messages whose heads are parsed, and looked up in the audit store, at a time.
_CHUNK = 5000
_PAST_THE_END = (sys.maxsize, sys.maxsize)


@dataclass(frozen=True)
class Plan:
    transform_id: str
    force: bool
    dry_run: bool
    to_send: int  # identify messages; group calls are counted apart
    unchanged: int
    # [first, last] line numbers (from 1, both included) of ``lines(stage, shard)`` not to
    # send.
    unchanged_lines: list[list[int]]
    groups_to_send: int = 0
    groups_unchanged: int = 0
    # [line, trait mask]: identify messages to send with the traits of the mask added as
    # null (MOESIF_SEGMENT_REMOVED_TRAITS=null): those the user's last accepted one had.
    null_traits: list[list[int]] = field(default_factory=list)

    def selected(self, lines: Iterable[T]) -> Iterator[T]:
        """The items of ``lines`` (one per staged message, in order) that are to be sent."""
        if not self.unchanged_lines:
            yield from lines
            return
        skipped = iter(self.unchanged_lines)
        first, last = next(skipped)
        for number, line in enumerate(lines, start=1):
            if number < first:
                yield line
            elif number == last:
                first, last = next(skipped, _PAST_THE_END)

    def matches(self, transform_id: str, *, force: bool, dry_run: bool) -> bool:
        return (self.transform_id, self.force, self.dry_run) == (transform_id, force, dry_run)


Accepted = Callable[[list[str], bool], dict[str, tuple[str, int | None]]]


def make(heads: Iterable[bytes], accepted: Accepted | None, *, transform_id: str, force: bool,
         dry_run: bool, null_removed: bool = False) -> Plan:
    """The plan for a shard whose messages' ``heads`` these are. ``accepted(user_ids,
    group)`` maps user ids to the (messageId, trait mask) Segment last accepted for each
    one's identify (``group`` False) or group call (True), for those it has; ``None`` skips
    nothing. ``force`` sends what is unchanged too. ``null_removed`` marks the identify
    messages that lack top-level traits the user's last accepted one had (``null_traits``)."""
    ranges: list[list[int]] = []
    nulls: list[list[int]] = []
    number = groups = groups_unchanged = 0
    for chunk in chunks(heads, _CHUNK):
        start = number
        number += len(chunk)
        parsed = orjson.loads(b"[" + b",".join(chunk) + b"]")  # one parse per chunk
        kinds = [is_group(head[1]) for head in parsed]
        groups += sum(kinds)
        if accepted is None:
            continue
        # What Segment has, indexed by kind: [identify messages, group calls].
        have = [accepted([head[0] for head, kind in zip(parsed, kinds, strict=True)
                          if kind is group], group) if group in kinds else {}
                for group in (False, True)]
        for offset, head, kind in zip(range(start + 1, number + 1), parsed, kinds, strict=True):
            message_id, mask = have[kind].get(head[0], (None, None))
            if message_id == head[1] and not force:
                groups_unchanged += kind
                if ranges and ranges[-1][1] == offset - 1:
                    ranges[-1][1] = offset
                else:
                    ranges.append([offset, offset])
            elif null_removed and mask and len(head) > 2 and mask & ~head[2]:
                nulls.append([offset, mask & ~head[2]])
    unchanged = sum(last - first + 1 for first, last in ranges) - groups_unchanged
    return Plan(transform_id, force, dry_run, number - groups - unchanged, unchanged, ranges,
                groups - groups_unchanged, groups_unchanged, nulls)


def with_nulls(lines: Iterable[bytes], null_traits: list[list[int]]) -> Iterator[bytes]:
    """``lines`` (a shard's, numbered from 1) with the removed traits of ``null_traits`` added
    as null to the lines it names."""
    if not null_traits:
        yield from lines
        return
    nulls = dict(map(tuple, null_traits))
    for number, line in enumerate(lines, start=1):
        mask = nulls.get(number)
        yield line if mask is None else with_null_traits(line, trait_names(mask))


def read(stage: Staging, shard: int) -> Plan | None:
    """The shard's staged plan, or ``None`` when there is none in this format (a plan of an
    earlier release, which staged the messages to send in a file of their own)."""
    if not stage.exists(staging.plan_file(shard)):
        return None
    staged = stage.read_json(staging.plan_file(shard))
    if "unchanged_lines" not in staged:
        return None
    return Plan(**{name: staged[name] for name in Plan.__dataclass_fields__ if name in staged})


def write(stage: Staging, shard: int, plan: Plan) -> None:
    stage.write_json(staging.plan_file(shard), asdict(plan))


def lines(stage: Staging, shard: int) -> Iterator[bytes]:
    """The shard's messages: its identify messages, then its group calls when it has some."""
    own = stage.lines(staging.messages_file(shard))
    if not stage.exists(staging.groups_file(shard)):
        return own
    return chain(own, stage.lines(staging.groups_file(shard)))


def heads(stage: Staging, shard: int) -> Iterator[bytes]:
    """The shard's heads, line for line with ``lines``. A shard staged by a transform
    before heads files existed has its heads read from the messages (slower)."""
    if not stage.exists(staging.heads_file(shard)):
        return (staging.head_line(message["userId"], message["messageId"])
                for message in map(orjson.loads, stage.lines(staging.messages_file(shard))))
    own = stage.lines(staging.heads_file(shard))
    if not stage.exists(staging.group_heads_file(shard)):
        return own
    return chain(own, stage.lines(staging.group_heads_file(shard)))


def sent_messages(stage: Staging, shards: int) -> Iterator[dict]:
    """The messages a run's loads sent (or would have sent, in a dry run), from its plans."""
    for shard in range(shards):
        for line in _planned_lines(stage, shard):
            yield codec.loads(line)[0]


def _planned_lines(stage: Staging, shard: int) -> Iterator[bytes]:
    """The shard's messages its load plan sends: all of them when it has no plan, and the
    copy an earlier release staged for a run it loaded."""
    shard_plan = read(stage, shard)
    if shard_plan is None and stage.exists(staging.to_send_file(shard)):
        return stage.lines(staging.to_send_file(shard))
    staged = lines(stage, shard)
    if shard_plan is None:
        return staged
    return shard_plan.selected(with_nulls(staged, shard_plan.null_traits))
