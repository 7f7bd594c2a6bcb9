"""The synthetic data generator: deterministic, inside the window, and bad where it says."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest

from sandbox.datagen import (
    REJECT_REASONS,
    UNPARSEABLE_TIMESTAMP,
    generate,
    main,
    read_jsonl,
    write_jsonl,
)
from sandbox.moesif import parse_timestamp_ms

START = datetime(2026, 11, 25, tzinfo=UTC)
END = datetime(2026, 11, 25, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def dataset():
    return generate(2_000, seed=7, start=START, end=END)


def test_same_seed_gives_identical_output():
    first = generate(500, seed=42, start=START, end=END)
    second = generate(500, seed=42, start=START, end=END)

    assert orjson.dumps(first.users) == orjson.dumps(second.users)
    assert orjson.dumps(first.companies) == orjson.dumps(second.companies)
    assert first.expected_rejects == second.expected_rejects


def test_another_seed_gives_other_output():
    first = generate(100, seed=1, start=START, end=END)
    second = generate(100, seed=2, start=START, end=END)

    assert orjson.dumps(first.users) != orjson.dumps(second.users)


def test_companies_default_to_one_per_twenty_users():
    assert len(generate(2_000, start=START, end=END).companies) == 100
    assert len(generate(5, start=START, end=END).companies) == 1


def test_modified_and_last_seen_times_fall_in_the_window(dataset):
    start_ms, end_ms = parse_timestamp_ms(START.isoformat()), parse_timestamp_ms(END.isoformat())
    for record in dataset.users + dataset.companies:
        for name in ("modified_time", "last_seen_time", "created", "first_seen_time"):
            if record.get(name) != UNPARSEABLE_TIMESTAMP:
                assert start_ms <= parse_timestamp_ms(record[name]) < end_ms, (name, record)


def test_timestamps_come_in_all_four_forms(dataset):
    values = [user["modified_time"] for user in dataset.users]
    seven_digits = [v for v in values if isinstance(v, str) and v.endswith("Z")]

    assert len(seven_digits) > len(values) * 0.7
    assert all(len(v.split(".")[1]) == 8 for v in seven_digits)  # 7 digits and the Z
    assert any(isinstance(v, str) and v[-6] in "+-" for v in values)
    assert any(isinstance(v, str) and len(v) == 23 for v in values)  # no zone
    assert any(isinstance(v, int) for v in values)


def test_about_one_percent_of_users_are_bad_for_the_reason_given(dataset):
    rejects = dataset.expected_rejects

    assert len(rejects) == 20
    assert set(rejects.values()) == set(REJECT_REASONS.values())
    for index, reason in rejects.items():
        user = dataset.users[index]
        if reason == "blank user_id":
            assert user["user_id"].strip() == ""
        elif reason == "missing user_id":
            assert "user_id" not in user
        elif reason == "user_id is not a string":
            assert isinstance(user["user_id"], int)
        else:
            assert len(orjson.dumps(user["metadata"])) > 32_768


def test_good_users_have_string_ids_and_fit_under_32_kb(dataset):
    good = [u for i, u in enumerate(dataset.users) if i not in dataset.expected_rejects]

    assert all(isinstance(u["user_id"], str) and u["user_id"].startswith("usr_") for u in good)
    assert max(len(orjson.dumps(u)) for u in good) < 16_000


def test_one_user_has_an_unparseable_modified_time(dataset):
    flagged = [i for i, why in dataset.expected_warnings.items()
               if why == "unparseable modified_time"]

    assert len(flagged) == 1
    assert parse_timestamp_ms(dataset.users[flagged[0]]["modified_time"]) is None


def test_some_users_point_at_companies_that_do_not_exist(dataset):
    company_ids = {company["company_id"] for company in dataset.companies}
    dangling = [i for i, user in enumerate(dataset.users)
                if user.get("company_id") and user["company_id"] not in company_ids]

    assert dangling
    assert all(dataset.expected_warnings.get(i) == "company_id not among the companies"
               for i in dangling if i not in dataset.expected_rejects)


def test_users_carry_the_documented_fields(dataset):
    user = dataset.users[0]

    assert {"user_id", "ip_address", "geo_ip", "user_agent", "user_agent_string",
            "session_token", "metadata", "app_id", "org_id"} <= set(user)
    assert set(user["geo_ip"]) == {"ip", "city_name", "region_name", "region_code",
                                   "postal_code", "country_name", "country_code2",
                                   "country_code3", "continent_code", "latitude", "longitude",
                                   "location", "timezone", "dma_code"}
    assert any("email" in u.get("metadata", {}) and "email" not in u for u in dataset.users)
    assert any("clearbit" in u for u in dataset.users)
    assert any("last_24h_agg_results" in u for u in dataset.users)


def test_companies_have_mostly_integer_ttfhw_and_some_unusable_ones(dataset):
    ttfhw = [company["ttfhw"] for company in dataset.companies]

    assert sum(isinstance(v, int) and v >= 0 for v in ttfhw) > len(ttfhw) * 0.6
    assert set(dataset.company_warnings.values()) <= {"negative ttfhw", "non-numeric ttfhw"}
    assert all(("company_domain" in c) != ("domain_name" in c) for c in dataset.companies)


def test_no_bad_users_when_asked_for_clean_data():
    clean = generate(1_000, start=START, end=END, bad=False)

    assert clean.expected_rejects == {}
    assert all(parse_timestamp_ms(u["modified_time"]) is not None for u in clean.users)


def test_jsonl_round_trip_keeps_nan_and_bad_records(tmp_path):
    records = [{"user_id": "usr_1", "score": math.nan}, "not an object", {"user_id": "  "}]

    write_jsonl(records, tmp_path / "users.jsonl")
    back = read_jsonl(tmp_path / "users.jsonl")

    assert math.isnan(back[0]["score"])
    assert back[1:] == records[1:]


def test_cli_writes_users_companies_and_expectations(tmp_path):
    main(["--users", "200", "--seed", "3", "--start", "2026-11-25T00:00:00Z",
          "--end", "2026-11-25T01:00:00Z", "--out", str(tmp_path)])

    users = read_jsonl(tmp_path / "users.jsonl")
    expected = orjson.loads((tmp_path / "expected.json").read_bytes())

    assert users == generate(200, seed=3, start=START, end=END).users
    assert len(read_jsonl(tmp_path / "companies.jsonl")) == 10
    assert len(expected["expected_rejects"]) == 4
