"""The load plan: which staged messages are unchanged, kept as line ranges, nothing copied."""

from __future__ import annotations

import orjson
import pytest

from moesif_segment_sync.pipeline import plan, staging
from moesif_segment_sync.pipeline.staging import Staging

TRANSFORM = {"transform_id": "t-1", "force": False, "dry_run": False}


def head(number: int, version: str = "a") -> bytes:
    return orjson.dumps([f"u{number}", f"m{number}-{version}"])


def message(number: int, version: str = "a") -> bytes:
    return orjson.dumps({"type": "identify", "userId": f"u{number}",
                         "messageId": f"m{number}-{version}"})


@pytest.fixture
def stage(tmp_path):
    return Staging(tmp_path.as_uri(), "moesif_to_segment", "manual__2026-11-25T01:00:00+00:00")


def test_unchanged_messages_are_kept_as_ranges_of_line_numbers():
    accepted = {"u1": "m1-a", "u2": "m2-a", "u4": "m4-old", "u5": "m5-a", "u7": "m7-a"}
    heads = [head(number) for number in range(1, 8)]

    made = plan.make(heads, lambda users, group: {u: (accepted[u], None) for u in users
                                                  if u in accepted}, **TRANSFORM)

    assert made.unchanged_lines == [[1, 2], [5, 5], [7, 7]]
    assert (made.to_send, made.unchanged) == (3, 4)
    assert list(made.selected(heads)) == [head(3), head(4), head(6)]


def test_group_calls_are_planned_after_the_identifies_against_their_own_state():
    """A user's group call is unchanged when it is the group call Segment last accepted for
    that user, whatever its identify did; lines number on through the group calls."""
    group = "moesif-segment-sync-group-"
    heads = [head(1), head(2),
             orjson.dumps(["u1", f"{group}g1-a"]), orjson.dumps(["u2", f"{group}g2-b"])]
    state = {False: {"u1": "m1-a", "u2": "m2-old"}, True: {"u1": f"{group}g1-a",
                                                           "u2": f"{group}g2-a"}}
    asked = []

    def accepted(users, group_calls):
        asked.append((users, group_calls))
        return {u: (state[group_calls][u], None) for u in users if u in state[group_calls]}

    made = plan.make(heads, accepted, **TRANSFORM)

    assert asked == [(["u1", "u2"], False), (["u1", "u2"], True)]
    assert made.unchanged_lines == [[1, 1], [3, 3]]
    assert (made.to_send, made.unchanged, made.groups_to_send, made.groups_unchanged) == (
        1, 1, 1, 1)
    assert list(made.selected(heads)) == [head(2), heads[3]]


def test_force_skips_nothing_and_asks_the_store_nothing():
    made = plan.make([head(number) for number in range(1, 4)], None,
                     **{**TRANSFORM, "force": True})
    assert (made.to_send, made.unchanged, made.unchanged_lines) == (3, 0, [])


def test_the_plan_round_trips_as_readable_json(stage):
    made = plan.make([head(1), head(2)], lambda users, group: {"u2": ("m2-a", None)}, **TRANSFORM)

    plan.write(stage, 0, made)

    assert stage.read_json(staging.plan_file(0)) == {
        "transform_id": "t-1", "force": False, "dry_run": False, "to_send": 1, "unchanged": 1,
        "unchanged_lines": [[2, 2]], "groups_to_send": 0, "groups_unchanged": 0,
        "null_traits": []}
    assert plan.read(stage, 0) == made
    assert made.matches("t-1", force=False, dry_run=False)
    assert not made.matches("t-2", force=False, dry_run=False)


def test_a_plan_of_an_earlier_release_is_not_resumed(stage):
    stage.write_json(staging.plan_file(0), {**TRANSFORM, "to_send": 2, "unchanged": 0})
    assert plan.read(stage, 0) is None


def test_heads_come_from_the_heads_file_or_from_messages_staged_without_one(stage):
    with stage.writer(staging.messages_file(0)) as out:
        for number in (1, 2):
            out.write_line(message(number))
    assert list(plan.heads(stage, 0)) == [head(1), head(2)]

    with stage.writer(staging.heads_file(0)) as out:
        out.write_line(head(1, "from-file"))
    assert list(plan.heads(stage, 0)) == [head(1, "from-file")]


def test_removed_traits_are_marked_for_null_only_when_asked():
    """A message to send whose user's last accepted one had traits this one lacks gets those
    traits (as a mask) on its line; unchanged, new or unmasked users get none."""
    heads = [orjson.dumps(["u1", "m1-b", 0b0011]), orjson.dumps(["u2", "m2-a", 0b0111]),
             orjson.dumps(["u3", "m3-a", 0b0001]), orjson.dumps(["u4", "m4-b", 0b0001])]
    state = {"u1": ("m1-a", 0b1011), "u2": ("m2-a", 0b1111), "u4": ("m4-a", None)}

    def accepted(users, group):
        return {u: state[u] for u in users if u in state}

    nulled = plan.make(heads, accepted, **TRANSFORM, null_removed=True)
    kept = plan.make(heads, accepted, **TRANSFORM)

    assert nulled.null_traits == [[1, 0b1000]]  # u2 is unchanged, u3 new, u4 has no mask
    assert kept.null_traits == []
    lines = [b'{"type":"identify","traits":{"id":"u1"}}', b"{}", b"{}", b"{}"]
    assert next(plan.with_nulls(lines, nulled.null_traits)) == (
        b'{"type":"identify","traits":{"id":"u1","firstSeenTime":null}}')
