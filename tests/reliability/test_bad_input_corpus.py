"""The bad-input corpus, served by the Moesif stand-in and run through every stage.

``corpus/bad_input.jsonl`` holds one case a line: the record as Moesif would
serve it (NaN, Infinity and lone surrogates written as JSON's ``NaN`` and
``\\ud800``), why it is there, and what must become of it (trait-mapping.md):
sent with these traits, or rejected with this kind and reason. Cases too big
to read in a file (40 KB and 2 MB of metadata, deep nesting, huge integers)
are built below. The whole corpus is one full-refresh run; each test checks
one case or one property of that run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.store.audit import AuditStore
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.reliability.support import (
    MOESIF_KEY,
    WRITE_KEY,
    make_run,
    run_stages,
    staged,
    staged_messages,
)

T = "2026-11-25T00:30:00.000Z"
OVERSIZE = re.compile(r"message is ([\d,]+) bytes of JSON, over Segment's 32 KB limit "
                      r"\(32,768 bytes\)")


def nested(depth: int) -> dict:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


def built_cases() -> list[dict]:
    """The cases whose records are too large or too deep to keep in the corpus file."""
    def exactly(user_id: str, metadata: dict) -> dict:
        return {"entity": "user", "record": {"user_id": user_id, "modified_time": T,
                                             "metadata": metadata},
                "expect": {"outcome": "sent", "traits": {"metadata": metadata}}}

    def oversize(user_id: str, size: int) -> dict:
        return {"entity": "user", "record": {"user_id": user_id, "modified_time": T,
                                             "metadata": {"notes": "x" * size}},
                "expect": {"outcome": "rejected", "kind": "oversize", "size": [size, size + 1000]}}

    return [
        {"case": "metadata_of_40_kb", **oversize("usr_40kb", 40_000)},
        {"case": "metadata_of_2_mb", **oversize("usr_2mb", 2_000_000)},
        {"case": "metadata_nested_100_deep", **exactly("usr_deep_100", nested(100))},
        {"case": "metadata_nested_300_deep", **exactly("usr_deep_300", nested(300))},
        {"case": "integers_over_64_bits_in_metadata",
         **exactly("usr_big_integers", {"account": 123456789012345678901234567890,
                                        "debt": -98765432109876543210, "max": 2**64 - 1})},
        {"case": "company_with_integers_over_64_bits", "entity": "company",
         "record": {"company_id": "cmp_big", "metadata": {"revenue": 10**30 + 1}},
         "expect": {"outcome": "accepted"}},
        {"case": "user_of_company_with_integers_over_64_bits", "entity": "user",
         "record": {"user_id": "usr_of_cmp_big", "modified_time": T, "company_id": "cmp_big"},
         "expect": {"outcome": "sent",
                    "traits": {"company": {"id": "cmp_big", "metadata": {"revenue": 10**30 + 1}}}}},
        {"case": "four_hundred_metadata_traits", "entity": "user",
         "record": {"user_id": "usr_many_traits", "modified_time": T,
                    "metadata": {f"k{n}": n for n in range(400)}},
         "expect": {"outcome": "sent", "traits": {"id": "usr_many_traits"}},
         "warnings": {"too_many_traits": 1}},
    ]


CORPUS_FILE = Path(__file__).with_name("corpus") / "bad_input.jsonl"
CASES = [json.loads(line) for line in CORPUS_FILE.read_text().splitlines()] + built_cases()
USER_CASES = [case for case in CASES if case["entity"] == "user"]
COMPANY_REJECTS = [case for case in CASES
                   if case["entity"] == "company" and case["expect"]["outcome"] == "rejected"]


def canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True, allow_nan=True)


@dataclass
class CorpusRun:
    run: Any
    summaries: dict
    messages: dict[str, dict]   # userId -> the staged message, exactly as sent
    rejects: list[dict]
    delivered: set[str]         # messageIds the Segment stand-in kept
    segment_user_ids: list      # every userId the Segment stand-in received


def run_corpus(root: Path, moesif: MoesifStandIn, segment: SegmentStandIn,
               run_id: str) -> CorpusRun:
    run = make_run(root, run_id, full_refresh=True, max_rejected_share=1.0)
    summaries = run_stages(run, moesif.url, segment.url)
    messages = {message["userId"]: message for message in staged_messages(run)}
    return CorpusRun(run, summaries, messages, staged(run, staging.REJECTS),
                     set(segment.delivered), [m["userId"] for m in segment.accepted])


@pytest.fixture(scope="module")
def servers():
    users = [case["record"] for case in USER_CASES]
    companies = [case["record"] for case in CASES if case["entity"] == "company"]
    with MoesifStandIn(users, companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        yield moesif, segment


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, servers) -> CorpusRun:
    return run_corpus(tmp_path_factory.mktemp("corpus"), *servers, "manual__corpus")


def rejects_of(corpus: CorpusRun, case: dict) -> list[dict]:
    return [reject for reject in corpus.rejects if reject["entity"] == case["entity"]
            and canonical(reject["record"]) == canonical(case["record"])]


@pytest.mark.parametrize("case", [case for case in USER_CASES
                                  if case["expect"]["outcome"] == "rejected"],
                         ids=lambda case: case["case"])
def test_a_bad_user_is_rejected_with_the_reason_the_corpus_gives(corpus, case):
    expect = case["expect"]

    [reject] = rejects_of(corpus, case)

    assert reject["kind"] == expect["kind"]
    if "reason" in expect:
        assert reject["reason"] == expect["reason"]
    if "reason_prefix" in expect:
        assert reject["reason"].startswith(expect["reason_prefix"])
    if "size" in expect:
        low, high = expect["size"]
        assert OVERSIZE.fullmatch(reject["reason"])
        assert low < int(OVERSIZE.fullmatch(reject["reason"])[1].replace(",", "")) < high
    user_id = case["record"].get("user_id") if isinstance(case["record"], dict) else None
    if isinstance(user_id, str):
        assert user_id not in corpus.messages
        assert user_id not in corpus.segment_user_ids


@pytest.mark.parametrize("case", [case for case in USER_CASES
                                  if case["expect"]["outcome"] == "sent"],
                         ids=lambda case: case["case"])
def test_a_bad_user_is_sent_as_the_corpus_says(corpus, case):
    expect = case["expect"]

    message = corpus.messages[case["record"]["user_id"]]

    assert rejects_of(corpus, case) == []
    assert message["messageId"] in corpus.delivered
    for name, value in expect.get("traits", {}).items():
        assert message["traits"][name] == value, name
    assert [name for name in expect.get("absent", []) if name in message["traits"]] == []
    for name, value in expect.get("context", {}).items():
        assert message["context"][name] == value, name
    assert [name for name in expect.get("context_absent", []) if name in message["context"]] == []
    if "timestamp" in expect:
        assert message["timestamp"] == expect["timestamp"]


@pytest.mark.parametrize("case", COMPANY_REJECTS, ids=lambda case: case["case"])
def test_a_bad_company_is_rejected_with_the_reason_the_corpus_gives(corpus, case):
    [reject] = rejects_of(corpus, case)

    assert (reject["kind"], reject["reason"]) == (case["expect"]["kind"],
                                                  case["expect"]["reason"])


def test_every_corpus_user_ends_exactly_once_as_sent_or_rejected(corpus):
    transformed = corpus.summaries["transform"]
    user_rejects = [reject for reject in corpus.rejects if reject["entity"] == "user"]

    assert transformed.considered == len(USER_CASES)
    assert len(corpus.messages) + len(user_rejects) == len(USER_CASES)
    sent = [case for case in USER_CASES if isinstance(case["record"], dict)
            and isinstance(case["record"].get("user_id"), str)
            and case["record"]["user_id"] in corpus.messages]
    assert len(sent) == len(corpus.messages)
    assert Counter(canonical(r["record"]) for r in user_rejects) + Counter(
        canonical(case["record"]) for case in sent) == Counter(
        canonical(case["record"]) for case in USER_CASES)
    assert all(reject["reason"] for reject in corpus.rejects)


def test_what_was_sent_is_what_segment_received(corpus):
    assert corpus.delivered == {m["messageId"] for m in corpus.messages.values()}
    assert sorted(corpus.segment_user_ids) == sorted(corpus.messages)


def test_the_corpus_warnings_add_up_to_the_cases_that_cause_them(corpus):
    expected = sum((Counter(case.get("warnings", {})) for case in CASES), Counter())

    assert corpus.summaries["transform"].warnings == dict(sorted(expected.items()))


def test_the_run_record_accounts_for_every_corpus_user(corpus):
    report = corpus.summaries["audit"]

    assert report["status"] == "success"
    assert (report["considered"], report["sent"], report["unchanged"], report["rejected"]) == (
        len(USER_CASES), len(corpus.messages), 0, len(USER_CASES) - len(corpus.messages))


def test_the_audit_store_holds_every_reject_whole_with_its_reason(corpus):
    store = AuditStore(corpus.run.audit_url)
    stored = store.rejects(corpus.run.key)
    store.close()

    assert [(row["kind"], row["reason"]) for row in stored] == [
        (reject["kind"], reject["reason"]) for reject in corpus.rejects]
    assert [canonical(json.loads(row["raw_record"])) for row in stored] == [
        canonical(reject["record"]) for reject in corpus.rejects]


def test_a_second_run_of_the_corpus_counts_every_sent_user_as_unchanged(corpus, servers):
    again = run_corpus(Path(corpus.run.staging_root.removeprefix("file://")).parent, *servers,
                       "manual__corpus_again")

    report = again.summaries["audit"]
    assert (report["sent"], report["unchanged"], report["rejected"]) == (
        0, len(corpus.messages), corpus.summaries["audit"]["rejected"])
    assert report["status"] == "success"
