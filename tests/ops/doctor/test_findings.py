"""The doctor's pure parts: findings from answers, the page-size search, rendering."""

from __future__ import annotations

import json

import pytest

from moesif_segment_sync.moesif import fields
from moesif_segment_sync.moesif.fields import AS_INFERRED
from moesif_segment_sync.ops import doctor
from moesif_segment_sync.ops.doctor import Finding, Report, Status


def test_what_each_field_feeds_covers_exactly_the_fields_the_models_read():
    for entity in doctor.ENTITIES:
        assert list(doctor.FEEDS[entity]) == list(doctor.MAPPED[entity])


def test_every_inferred_field_has_candidate_hints():
    assert {(entity, name) for entity, names in fields.INFERRED.items()
            for name in names} == set(doctor.HINTS)


@pytest.mark.parametrize(("entity", "name", "account", "expected"), [
    ("users", "last_24h_agg_results", {"user_id", "rollup_24h", "email"}, ["rollup_24h"]),
    ("users", "clearbit", {"clearbit_v2", "enrichment", "user_id"}, ["clearbit_v2", "enrichment"]),
    ("users", "created", {"date_created", "created"}, ["date_created"]),
    ("companies", "ttfhw", {"time_to_first_hello_world_s", "first_seen_time"},
     ["time_to_first_hello_world_s"]),
    ("users", "clearbit", {"first_seen_time"}, []),
])
def test_candidates_are_unread_fields_whose_name_suggests_the_inferred_one(
        entity, name, account, expected):
    assert doctor.candidates(entity, name, account) == expected


def test_a_mapping_without_the_id_field_is_a_failure():
    found = doctor.field_findings("users", ["email"], AS_INFERRED)
    by_check = {f.check: f for f in found}
    assert by_check["moesif.field.users.user_id"].status is Status.FAIL


def test_an_override_to_a_missing_field_when_the_inferred_one_exists_says_remove_it():
    names = fields.FieldNames.from_overrides({"users.clearbit": "enrichment"})
    found = {f.check: f for f in doctor.field_findings("users", ["user_id", "clearbit"], names)}
    assert found["moesif.field.users.clearbit"].fix == (
        "remove 'users.clearbit' from MOESIF_SEGMENT_FIELD_NAMES")


@pytest.mark.parametrize(("document", "expected"), [
    ({"user_id": {"type": "keyword"}, "email": {"type": "text"}}, ["email", "user_id"]),
    ({"properties": {"user_id": {"type": "keyword"}}}, ["user_id"]),
    ({"mappings": {"properties": {"user_id": {"type": "keyword"}}}}, ["user_id"]),
    # A field that happens to be called "properties" is a field, not a wrapper.
    ({"properties": {"type": "object"}, "user_id": {"type": "keyword"}},
     ["properties", "user_id"]),
    ({}, []),
    ([], None),
])
def test_mapping_fields_reads_each_plausible_form(document, expected):
    assert doctor.mapping_fields(document) == expected


@pytest.mark.parametrize(("limit", "configured"), [(137, 1000), (1, 1000), (999, 1000),
                                                   (500, 10_000), (2, 3)])
def test_the_page_size_search_finds_the_limit(limit, configured):
    asked = []

    def accepts(size: int) -> bool:
        asked.append(size)
        return size <= limit

    sizes = doctor.largest_page_size(accepts, configured)
    assert (sizes.accepted, sizes.refused, sizes.exact) == (limit, limit + 1, True)
    assert len(asked) <= 1 + configured.bit_length()


def test_the_page_size_search_keeps_its_bounds_when_it_cannot_go_on():
    answers = iter([False, True, None])
    sizes = doctor.largest_page_size(lambda size: next(answers), 1000)
    assert (sizes.accepted, sizes.refused, sizes.exact) == (500, 1000, False)


def test_an_accepted_configured_size_needs_one_request():
    assert doctor.largest_page_size(lambda size: True, 1000) == doctor.PageSizes(1000, 1000)


@pytest.mark.parametrize(("url", "status", "region"), [
    ("https://api.segment.io", Status.OK, "US"),
    ("https://events.eu1.segmentapis.com/", Status.OK, "EU"),
    ("http://api.segment.io", Status.WARN, "US"),
    ("https://api.segment.io/v1", Status.WARN, "US"),
    ("https://events.eu1.segment.io", Status.WARN, None),
    ("http://127.0.0.1:8081", Status.WARN, None),
])
def test_the_segment_host_is_one_of_the_two_documented_regions(url, status, region):
    finding = doctor.segment_host_finding(url)
    assert (finding.status, finding.data["region"]) == (status, region)


def test_the_us_host_says_an_eu_key_is_rejected_there_and_where_eu_goes():
    finding = doctor.segment_host_finding("https://api.segment.io")
    assert finding.message == (
        "https://api.segment.io is the US host: right only if the source's workspace is in "
        "the US region; since April 2025 a write key of an EU workspace is rejected here")
    assert finding.fix == ("if the workspace is in the EU region, set the host to "
                           "https://events.eu1.segmentapis.com")


@pytest.mark.parametrize(("url", "status"), [
    ("https://api.moesif.com", Status.OK), ("https://api.moesif.net", Status.FAIL),
    ("https://api.moesif.com/v1", Status.WARN), ("http://127.0.0.1:9000", Status.INFO)])
def test_the_moesif_host_is_the_management_api(url, status):
    assert doctor.moesif_host_finding(url).status is status


def test_rendering_redacts_every_secret_in_text_and_json():
    report = Report([Finding("x", Status.FAIL, "answer quoted sk-secret-1",
                             "use sk-secret-2 \"quoted\"", {"raw": ["sk-secret-1"]})],
                    secrets=("sk-secret-1", "sk-secret-2"))
    text, document = doctor.render_text(report), doctor.render_json(report)
    assert "sk-secret" not in text + document
    assert text == ("FAIL  x: answer quoted ***  Fix: use *** \"quoted\"\n"
                    "0 OK, 0 WARN, 1 FAIL, 0 INFO: FAILED\n")
    assert json.loads(document)["findings"][0]["data"] == {"raw": ["***"]}
