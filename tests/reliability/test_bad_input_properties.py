"""Property tests: whatever Moesif serves, the transform never crashes, and every user ends
exactly once as sent (or, on a later run, unchanged) or rejected with a reason.

Records are drawn from every shape the issue names: missing, blank, numeric
and duplicate ids; every field of the wrong type; deep and large metadata;
extreme and invalid timestamps; NaN, Infinity and integers over 64 bits;
control characters and lone surrogates; companies that point at nothing and
users that are their own company. They are staged as Moesif's search hits
(``Staging.writer``) and run through the real ``transform``; a smaller
sample goes through every stage against the stand-ins.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moesif_segment_sync.pipeline import staging, transform
from moesif_segment_sync.pipeline.mapping import RejectKind
from moesif_segment_sync.pipeline.models import IdentifyMessage
from moesif_segment_sync.pipeline.staging import Staging
from moesif_segment_sync.settings import SEGMENT_MAX_MESSAGE_BYTES
from moesif_segment_sync.store.audit import AuditStore
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.reliability.support import (
    MOESIF_KEY,
    WINDOW_END,
    WRITE_KEY,
    FakeTime,
    make_run,
    on_fake_time,
    run_stages,
    staged_messages,
)


def examples(count: int) -> settings:
    """Deterministic examples for CI; ``RELIABILITY_EXPLORE=1`` explores ten times as many at
    random (``make soak`` leaves it to you)."""
    explore = os.environ.get("RELIABILITY_EXPLORE") == "1"
    return settings(max_examples=count * 10 if explore else count, derandomize=not explore,
                    database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SHARD_SIZE = 3  # a few messages a shard, so that most examples span several
OVERSIZE = re.compile(r"message is ([\d,]+) bytes of JSON, over Segment's 32 KB limit "
                      r"\(32,768 bytes\)")

# ---------------------------------------------------------------- what Moesif might serve

special_text = st.sampled_from(["", "   ", "\t\n", "\x00", "a\x01b\x1f", "\ud800", "x\udfffy",
                                "\u2028", "\U0001F600", "Zoë", "NaN", "null"])
text = st.one_of(st.text(max_size=12), special_text)
numbers = st.one_of(st.integers(-(2**31), 2**31), st.integers(2**63, 2**80),
                    st.integers(-(2**80), -(2**63) - 1),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)), max_leaves=12)


def nested(depth: int) -> dict:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value




def metadata_up_to(depth: int) -> st.SearchStrategy:
    return st.one_of(
        json_values,
        st.dictionaries(text, json_values, max_size=4),
        st.dictionaries(text, numbers, min_size=1, max_size=3),
        st.integers(0, depth).map(nested),                          # deep
        st.integers(0, 40_000).map(lambda n: {"pad": "x" * n}),     # large, around 32 KB
        st.integers(250, 450).map(lambda n: {f"k{i}": i for i in range(n)}),  # many traits
    )


timestamps = st.one_of(
    st.sampled_from(["2026-11-25T00:30:00.000Z", "2023-07-27T21:52:58.0990000Z",
                     "2023-07-27T21:55:19.464", "2026-11-25T02:10:00.000+02:00",
                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00",
                     "2026-02-30T00:00:00Z", "yesterday at noon", ""]),
    st.integers(-(2**63), 2**63), st.floats(allow_nan=True, allow_infinity=True), json_values)
user_ids = st.one_of(st.sampled_from([f"usr_{n}" for n in range(5)] + ["cmp_a"]), special_text,
                     text, numbers, st.none(), json_values)
company_ids = st.one_of(st.sampled_from(["cmp_a", "cmp_b", "cmp_nowhere", "usr_0"]), text,
                        numbers, st.none())
strings_or_anything = st.one_of(text, json_values)


def objects_of(*fields: str) -> st.SearchStrategy:
    return st.one_of(json_values, st.fixed_dictionaries(
        {}, optional=dict.fromkeys(fields, strings_or_anything)))


def users_with(metadata: st.SearchStrategy) -> st.SearchStrategy:
    user = st.fixed_dictionaries({}, optional={
        "user_id": user_ids, "company_id": company_ids, "email": strings_or_anything,
        "name": strings_or_anything, "first_name": strings_or_anything,
        "last_name": strings_or_anything, "user_name": strings_or_anything,
        "ip_address": strings_or_anything, "user_agent_string": strings_or_anything,
        "metadata": metadata, "clearbit": json_values, "last_24h_agg_results": json_values,
        "campaign": objects_of("utm_source", "utm_medium", "utm_campaign", "gclid", "referrer"),
        "geo_ip": st.one_of(objects_of("city_name", "country_name", "timezone"),
                            st.fixed_dictionaries({"latitude": numbers, "longitude": numbers})),
        "user_agent": objects_of("name", "major", "os_name", "device"),
        "created": timestamps, "modified_time": timestamps, "first_seen_time": timestamps,
        "last_seen_time": timestamps, "session_token": json_values,
    })
    return st.one_of(user, user, user, json_values)  # mostly objects: a _source can be anything


def companies_with(metadata: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={
        "company_id": company_ids, "metadata": metadata, "company_domain": strings_or_anything,
        "domain_name": strings_or_anything, "ip_address": strings_or_anything,
        "ttfhw": st.one_of(numbers, text), "created": timestamps, "modified_time": timestamps,
    })


user_records = users_with(metadata_up_to(600))
company_records = st.one_of(companies_with(metadata_up_to(600)), json_values)
# The Segment stand-in re-serializes what it receives with orjson, which stops at 254 levels.
served_user_records = users_with(metadata_up_to(200))
served_companies = companies_with(metadata_up_to(200))


@st.composite
def hits(draw: st.DrawFn, records: st.SearchStrategy) -> dict | Any:
    """A search hit around a record; now and then a hit that lacks ``_source``."""
    record = draw(records)
    if draw(st.integers(0, 9)) == 0:
        return record
    return {"_id": "doc", "_source": record, "sort": [0, "doc"]}


# ---------------------------------------------------------------- staging and reading back

@contextmanager
def task_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit, which an Airflow task runs with; Hypothesis raises the
    limit inside its tests, which would hide a crash on deeply nested records."""
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


@contextmanager
def scratch_stage() -> Iterator[Staging]:
    folder = tempfile.mkdtemp(prefix="mss-property-")
    try:
        yield Staging(Path(folder).as_uri(), "moesif_to_segment", "property")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stage_hits(stage: Staging, name: str, items: list) -> None:
    with stage.writer(name) as out:
        for item in items:
            out.write(item, lenient=True)  # as Moesif sent it: NaN, big integers kept


def source(hit: Any) -> Any:
    return hit["_source"] if isinstance(hit, dict) and "_source" in hit else hit


def key(record: Any) -> str | None:
    """What a user is known by: its user_id when that is a string (blank or not)."""
    value = record.get("user_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


def strict_json(line: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"a message carries {constant}")

    return json.loads(line, parse_constant=refuse)


def transformed(user_hits: list, company_hits: list, chunk_size: int) -> tuple:
    """Stage the hits (split over both user files and both company files) and transform them;
    the inputs in the order the transform reads them, the summary, messages and rejects."""
    with scratch_stage() as stage:
        half, third = len(user_hits) // 2, len(company_hits) // 3
        stage_hits(stage, staging.USERS, user_hits[:half])
        stage_hits(stage, staging.USERS_VIA_COMPANY, user_hits[half:])
        stage_hits(stage, staging.COMPANIES, company_hits[:third])
        stage_hits(stage, staging.USER_COMPANIES, company_hits[third:])
        with task_recursion_limit():
            summary = transform.transform(stage, default_timestamp=WINDOW_END,
                                          chunk_size=chunk_size, shard_size=SHARD_SIZE)
        lines = [line for shard in range(summary.shards)
                 for line in stage.lines(staging.messages_file(shard))]
        rejects = [json.loads(line) for line in stage.lines(staging.REJECTS)]
    return [source(hit) for hit in user_hits], summary, lines, rejects


# ---------------------------------------------------------------- properties of the transform

@examples(150)
@given(user_hits=st.lists(hits(user_records), max_size=10),
       company_hits=st.lists(hits(company_records), max_size=5),
       chunk_size=st.integers(1, 4))
def test_every_staged_user_ends_exactly_once_as_a_message_or_a_reject(user_hits, company_hits,
                                                                      chunk_size):
    inputs, summary, lines, rejects = transformed(user_hits, company_hits, chunk_size)

    messages = [strict_json(line) for line in lines]
    user_rejects = [reject for reject in rejects if reject["entity"] == "user"]
    sent = Counter(message["userId"] for message in messages)
    assert summary.considered == len(inputs) == len(messages) + len(user_rejects)
    assert summary.messages == len(messages)
    assert summary.rejected == len(user_rejects)
    assert max(sent.values(), default=1) == 1  # one message per user
    assert Counter(key(record) for record in inputs) == (
        Counter(reject["id"] for reject in user_rejects) + sent)
    for reject in rejects:
        assert reject["kind"] in {kind.value for kind in RejectKind}
        assert isinstance(reject["reason"], str) and reject["reason"].strip()


@examples(150)
@given(user_hits=st.lists(hits(user_records), max_size=10),
       company_hits=st.lists(hits(company_records), max_size=5))
def test_every_message_is_a_valid_identify_under_32_kb(user_hits, company_hits):
    _, _, lines, rejects = transformed(user_hits, company_hits, 3)

    for line in lines:
        assert len(line) <= SEGMENT_MAX_MESSAGE_BYTES
        message = IdentifyMessage.model_validate(strict_json(line))
        assert message.userId.strip() and message.messageId.startswith("moesif-segment-sync-")
    for reject in rejects:
        if reject["kind"] == "oversize":
            size = int(OVERSIZE.fullmatch(reject["reason"])[1].replace(",", ""))
            assert size > SEGMENT_MAX_MESSAGE_BYTES


@examples(150)
@given(user_hits=st.lists(hits(user_records), max_size=10),
       company_hits=st.lists(hits(company_records), max_size=5))
@example(user_hits=[{"_source": {"user_id": "usr_big", "metadata": {"n": 2**64 + 1}}}],
         company_hits=[])
@example(user_hits=[{"_source": {"user_id": "usr_0", "company_id": "cmp_a"}}],
         company_hits=[{"_source": {"company_id": "cmp_a", "metadata": {"x": float("nan")}}}])
def test_sent_metadata_is_exactly_what_moesif_served(user_hits, company_hits):
    inputs, _, lines, _ = transformed(user_hits, company_hits, 3)

    ids = Counter(key(record) for record in inputs)
    users_by_id = {key(record): record for record in inputs if ids[key(record)] == 1}
    companies_by_id: dict[str, Any] = {}
    for record in map(source, company_hits):  # the first staged company of an id wins
        company_id = record.get("company_id") if isinstance(record, dict) else None
        if isinstance(company_id, str):
            companies_by_id.setdefault(company_id, record)
    for message in map(json.loads, lines):
        if message["userId"] not in users_by_id:
            continue  # a user staged twice: which copy is sent is tested elsewhere
        served = [users_by_id[message["userId"]].get("metadata")]
        sent = [message["traits"].get("metadata")]
        company = message["traits"].get("company")
        if company and company["id"] in companies_by_id:
            served.append(companies_by_id[company["id"]].get("metadata"))
            sent.append(company.get("metadata"))
        for as_served, as_sent in zip(served, sent, strict=True):
            if isinstance(as_served, dict) and as_served:
                assert canonical(as_sent) == canonical(as_served)


@examples(60)
@given(pad=st.integers(31_500, 33_500))
def test_an_oversize_message_is_rejected_with_its_exact_size_and_never_staged(pad):
    def user(size: int) -> dict:
        return {"_id": "usr_pad", "_source": {"user_id": "usr_pad", "metadata": {"pad": "x" * size},
                                              "modified_time": "2026-11-25T00:30:00.000Z"}}

    _, _, [small], _ = transformed([user(10)], [], 1)
    size = len(small) - 10 + pad  # a message grows byte for byte with its padding

    _, _, lines, rejects = transformed([user(pad)], [], 1)

    if size <= SEGMENT_MAX_MESSAGE_BYTES:
        assert [len(line) for line in lines] == [size] and rejects == []
    else:
        assert lines == []
        assert [(r["kind"], r["reason"]) for r in rejects] == [("oversize", (
            f"message is {size:,} bytes of JSON, over Segment's 32 KB limit (32,768 bytes)"))]


def test_metadata_nested_600_deep_does_not_crash_the_transform():
    user = {"_id": "usr_deep", "_source": {"user_id": "usr_deep", "metadata": nested(600)}}

    inputs, summary, lines, rejects = transformed([user], [], 1)

    assert summary.considered == len(lines) + len(rejects) == 1


def test_a_staged_line_nested_deeper_than_the_parser_reads_is_rejected_not_a_crash():
    depth = 5000
    line = (b'{"_id":"usr_deep","_source":{"user_id":"usr_deep","metadata":'
            + b'{"a":' * depth + b"1" + b"}" * depth + b"}}")
    with scratch_stage() as stage:
        with stage.writer(staging.USERS) as out:
            out.write_line(line)
        for name in (staging.USERS_VIA_COMPANY, staging.COMPANIES, staging.USER_COMPANIES):
            stage_hits(stage, name, [])

        summary = transform.transform(stage, default_timestamp=WINDOW_END, chunk_size=1,
                                      shard_size=SHARD_SIZE)

        assert (summary.considered, summary.messages, summary.rejected) == (1, 0, 1)


# ---------------------------------------------------------------- every stage, over the stand-ins

@examples(25)
@given(records=st.lists(served_user_records, min_size=1, max_size=8),
       company_list=st.lists(served_companies, max_size=3))
@example(records=[{"user_id": "usr_\ud800"}], company_list=[])
def test_every_served_user_is_sent_then_unchanged_or_rejected_through_every_stage(
        records, company_list):
    folder = Path(tempfile.mkdtemp(prefix="mss-property-"))
    try:
        with MoesifStandIn(records, company_list, api_key=MOESIF_KEY).start() as moesif, \
                SegmentStandIn(WRITE_KEY).start() as segment, on_fake_time(FakeTime()):
            first_run = make_run(folder, "manual__first", full_refresh=True,
                                 max_rejected_share=1.0)
            with task_recursion_limit():
                first = run_stages(first_run, moesif.url, segment.url)["audit"]
            second = run_stages(make_run(folder, "manual__second", full_refresh=True,
                                         max_rejected_share=1.0), moesif.url, segment.url)["audit"]
            delivered = set(segment.delivered)
        messages = staged_messages(first_run)
        store = AuditStore(first_run.audit_url)
        stored_rejects = store.rejects(first_run.key)
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    assert first["status"] == second["status"] == "success"
    assert first["considered"] == first["sent"] + first["rejected"]
    assert delivered == {message["messageId"] for message in messages}
    assert (second["sent"], second["unchanged"], second["rejected"]) == (
        0, first["sent"], first["rejected"])
    assert len(stored_rejects) == first["rejected"] + first["counts"]["companies_rejected"]
