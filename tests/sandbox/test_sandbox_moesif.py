"""The Moesif stand-in over real HTTP: paging, the query subset, bad data, auth and control."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
import requests

from sandbox.moesif import MISSING_ASC, parse_timestamp_ms

SORT = [{"modified_time": {"order": "asc"}}, {"_id": {"order": "asc"}}]
START = "2026-11-25T00:00:00.000Z"
END = "2026-11-25T01:00:00.000Z"
START_MS = parse_timestamp_ms(START)
END_MS = parse_timestamp_ms(END)


def user(user_id: Any, **fields: Any) -> dict[str, Any]:
    return {"user_id": user_id, **fields}


def ids(result: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in result["hits"]["hits"]]


def window(field: str, **bounds: Any) -> dict[str, Any]:
    return {"range": {field: bounds}}


# ---------------------------------------------------------------- paging

def test_search_after_pages_through_ties_returning_each_user_exactly_once(start_moesif, search):
    users = [user(f"usr_{n:05d}", modified_time="2026-11-25T00:10:00.0000000Z")
             for n in range(2_500)]
    server = start_moesif(users)
    body: dict[str, Any] = {"size": 1_000, "query": {"match_all": {}}, "sort": SORT}
    pages = []
    while True:
        result = search(server, body)
        pages.append(ids(result))
        if len(pages[-1]) < 1_000:
            break
        body["search_after"] = result["hits"]["hits"][-1]["sort"]

    assert [len(page) for page in pages] == [1_000, 1_000, 500]
    seen = [user_id for page in pages for user_id in page]
    assert seen == sorted(u["user_id"] for u in users)
    assert result["hits"]["total"] == 2_500


def test_hits_carry_epoch_millis_and_id_as_sort_values(start_moesif, search):
    server = start_moesif([user("usr_1", modified_time="2023-07-27T21:52:58.0999999Z")])

    hit = search(server, {"sort": SORT})["hits"]["hits"][0]

    assert hit["sort"] == [1690494778099, "usr_1"]
    assert hit["_source"] == {"user_id": "usr_1", "modified_time": "2023-07-27T21:52:58.0999999Z"}


def test_response_has_took_timed_out_and_integer_total(start_moesif, search):
    server = start_moesif([user("usr_1"), user("usr_2")])

    result = search(server, {"size": 1})

    assert isinstance(result["took"], int)
    assert result["timed_out"] is False
    assert result["hits"]["total"] == 2
    assert len(result["hits"]["hits"]) == 1


def test_size_defaults_to_ten(start_moesif, search):
    server = start_moesif([user(f"usr_{n:02d}") for n in range(15)])

    assert len(search(server, {})["hits"]["hits"]) == 10


def test_users_without_the_sort_field_come_last_in_either_order(start_moesif, search):
    server = start_moesif([user("usr_none"), user("usr_late", modified_time=2_000),
                           user("usr_early", modified_time=1_000)])

    ascending = search(server, {"sort": SORT})
    descending = search(server, {"sort": [{"modified_time": "desc"}, {"_id": "desc"}]})

    assert ids(ascending) == ["usr_early", "usr_late", "usr_none"]
    assert ids(descending) == ["usr_late", "usr_early", "usr_none"]
    assert ascending["hits"]["hits"][-1]["sort"] == [MISSING_ASC, "usr_none"]


def test_search_after_a_missing_value_sentinel_continues_past_it(start_moesif, search):
    server = start_moesif([user("usr_a"), user("usr_b"), user("usr_c", modified_time=5)])

    result = search(server, {"sort": SORT, "search_after": [MISSING_ASC, "usr_a"]})

    assert ids(result) == ["usr_b"]


def test_descending_id_tiebreaker_pages_backwards(start_moesif, search):
    server = start_moesif([user(f"usr_{n}", modified_time=7) for n in range(5)])
    sort = [{"modified_time": {"order": "desc"}}, {"_id": {"order": "desc"}}]

    result = search(server, {"size": 10, "sort": sort, "search_after": [7, "usr_3"]})

    assert ids(result) == ["usr_2", "usr_1", "usr_0"]


# ---------------------------------------------------------------- queries

def test_range_includes_gte_and_excludes_lt(start_moesif, search):
    server = start_moesif([user("usr_before", modified_time=START_MS - 1),
                           user("usr_at_start", modified_time=START_MS),
                           user("usr_last_ms", modified_time=END_MS - 1),
                           user("usr_at_end", modified_time=END_MS)])

    result = search(server, {"query": window("modified_time", gte=START, lt=END), "sort": SORT})

    assert ids(result) == ["usr_at_start", "usr_last_ms"]


def test_range_takes_gt_and_lte_as_epoch_millis(start_moesif, search):
    server = start_moesif([user("usr_at_start", modified_time=START_MS),
                           user("usr_next_ms", modified_time=START_MS + 1),
                           user("usr_at_end", modified_time=END_MS)])

    result = search(server, {"query": window("modified_time", gt=START_MS, lte=END_MS),
                             "sort": SORT})

    assert ids(result) == ["usr_next_ms", "usr_at_end"]


def test_all_four_timestamp_forms_compare_as_the_same_instant(start_moesif, search):
    server = start_moesif([
        user("usr_seven_digits", modified_time="2026-11-25T00:30:00.1239999Z"),
        user("usr_no_zone", modified_time="2026-11-25T00:30:00.123"),
        user("usr_offset", modified_time="2026-11-25T02:30:00.123+02:00"),
        user("usr_epoch_ms", modified_time=parse_timestamp_ms("2026-11-25T00:30:00.123Z")),
    ])
    query = window("modified_time", gte="2026-11-25T00:30:00.123Z",
                   lt="2026-11-25T00:30:00.124Z")

    result = search(server, {"query": query, "sort": SORT})

    assert sorted(ids(result)) == ["usr_epoch_ms", "usr_no_zone", "usr_offset",
                                   "usr_seven_digits"]
    assert {hit["sort"][0] for hit in result["hits"]["hits"]} == {START_MS + 30 * 60_000 + 123}


def test_unparseable_timestamp_matches_no_range(start_moesif, search):
    server = start_moesif([user("usr_bad", modified_time="yesterday at noon"),
                           user("usr_week_date", modified_time="2026-W48-3"),
                           user("usr_good", modified_time=START)])

    result = search(server, {"query": window("modified_time", gte=0), "sort": SORT})

    assert ids(result) == ["usr_good"]


def test_should_matches_users_changed_or_seen_in_the_window(start_moesif, search):
    server = start_moesif([
        user("usr_changed", modified_time=START, last_seen_time="2020-01-01T00:00:00Z"),
        user("usr_seen", modified_time="2020-01-01T00:00:00Z", last_seen_time=START),
        user("usr_neither", modified_time="2020-01-01T00:00:00Z"),
    ])
    query = {"bool": {"should": [window("modified_time", gte=START, lt=END),
                                 window("last_seen_time", gte=START, lt=END)],
                      "minimum_should_match": 1}}

    assert sorted(ids(search(server, {"query": query}))) == ["usr_changed", "usr_seen"]


def test_should_beside_a_filter_is_optional_by_default(start_moesif, search):
    server = start_moesif([user("usr_in", company_id="cmp_1", modified_time=START),
                           user("usr_out", company_id="cmp_1", modified_time=0)])
    query = {"bool": {"filter": [{"terms": {"company_id.raw": ["cmp_1"]}}],
                      "should": [window("modified_time", gte=START)]}}

    assert sorted(ids(search(server, {"query": query}))) == ["usr_in", "usr_out"]


def test_must_not_excludes_members_already_in_the_window(start_moesif, search):
    server = start_moesif([
        user("usr_in_window", company_id="cmp_1", modified_time=START),
        user("usr_member_only", company_id="cmp_1", modified_time="2020-01-01T00:00:00Z"),
        user("usr_other_company", company_id="cmp_2", modified_time="2020-01-01T00:00:00Z"),
    ])
    query = {"bool": {"filter": [{"terms": {"company_id.raw": ["cmp_1"]}}],
                      "must_not": [window("modified_time", gte=START, lt=END),
                                   window("last_seen_time", gte=START, lt=END)]}}

    assert ids(search(server, {"query": query})) == ["usr_member_only"]


def test_terms_on_raw_field_match_exact_values_only(start_moesif, search):
    server = start_moesif([user("usr_a", company_id="cmp_1"), user("usr_b", company_id="CMP_1"),
                           user("usr_c", company_id="cmp_10"), user("usr_d", company_id="cmp_2"),
                           user("usr_e")])

    result = search(server, {"query": {"terms": {"company_id.raw": ["cmp_1", "cmp_2"]}}})

    assert sorted(ids(result)) == ["usr_a", "usr_d"]


def test_term_on_email_raw_and_user_id_raw(start_moesif, search):
    server = start_moesif([user("usr_a", email="ada@example.com"),
                           user("usr_b", email="Ada@example.com")])

    by_email = search(server, {"query": {"term": {"email.raw": "ada@example.com"}}})
    by_id = search(server, {"query": {"term": {"user_id.raw": {"value": "usr_b"}}}})

    assert ids(by_email) == ["usr_a"]
    assert ids(by_id) == ["usr_b"]


def test_companies_are_searched_and_identified_by_company_id(start_moesif, search):
    server = start_moesif([], [{"company_id": "cmp_1", "modified_time": START},
                               {"company_id": "cmp_2", "modified_time": 0}])

    result = search(server, {"query": window("modified_time", gte=START), "sort": SORT},
                    entity="companies")

    assert ids(result) == ["cmp_1"]


def test_unsupported_query_is_a_400_naming_it(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])

    response = moesif_session.post(f"{server.url}/v1/search/~/search/users",
                                   json={"query": {"fuzzy": {"email": "ada"}}})

    assert response.status_code == 400
    assert "fuzzy" in response.json()["message"]


# ---------------------------------------------------------------- bad data

def test_bad_records_are_served_as_loaded_with_synthetic_ids(start_moesif, search):
    bad = [user("  "), {"email": "no-id@example.com"}, user(12345), "not an object", None, [1]]
    server = start_moesif([user("usr_good"), *bad])

    result = search(server, {"size": 100, "query": {"match_all": {}}})

    assert ids(result) == ["usr_good", "_doc1", "_doc2", "_doc3", "_doc4", "_doc5", "_doc6"]
    assert [hit["_source"] for hit in result["hits"]["hits"]][1:] == bad


def test_documents_that_are_not_objects_match_no_field_query(start_moesif, search):
    server = start_moesif(["not an object", 42, user("usr_a", modified_time=START)])

    result = search(server, {"query": window("modified_time", gte=0), "sort": SORT})

    assert ids(result) == ["usr_a"]


def test_nan_and_lone_surrogates_are_served_verbatim(start_moesif, moesif_session):
    server = start_moesif([user("usr_nan", metadata={"score": float("nan")}),
                           user("usr_surrogate", name="\ud800")])

    response = moesif_session.post(f"{server.url}/v1/search/~/search/users", json={})
    sources = [hit["_source"] for hit in json.loads(response.content)["hits"]["hits"]]

    assert b"NaN" in response.content
    assert sources[1]["name"] == "\ud800"


# ---------------------------------------------------------------- errors and auth

def test_missing_or_wrong_key_is_a_401_naming_the_scope(start_moesif):
    server = start_moesif([user("usr_a")])

    no_key = requests.post(f"{server.url}/v1/search/~/search/users", json={})
    wrong_key = requests.post(f"{server.url}/v1/search/~/search/companies", json={},
                              headers={"Authorization": "Bearer nope"})

    assert no_key.status_code == 401
    assert no_key.json() == {"message": "Unauthorized. Missing required scopes: read:users"}
    assert wrong_key.status_code == 401
    assert wrong_key.json() == {"message": "Unauthorized. Missing required scopes: read:companies"}


def test_page_size_over_max_page_size_is_a_400(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")], max_page_size=500)

    too_big = moesif_session.post(f"{server.url}/v1/search/~/search/users", json={"size": 501})
    at_limit = moesif_session.post(f"{server.url}/v1/search/~/search/users", json={"size": 500})

    assert too_big.status_code == 400
    assert "500" in too_big.json()["message"]
    assert at_limit.status_code == 200


def test_invalid_json_body_is_a_400(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])

    response = moesif_session.post(f"{server.url}/v1/search/~/search/users", data=b"{size: 1",
                                   headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


def test_search_after_without_one_value_per_sort_field_is_a_400(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])

    response = moesif_session.post(f"{server.url}/v1/search/~/search/users",
                                   json={"sort": SORT, "search_after": [1]})

    assert response.status_code == 400


def test_offset_paging_past_ten_thousand_is_a_400(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])

    response = moesif_session.post(f"{server.url}/v1/search/~/search/users",
                                   json={"from": 9_500, "size": 1_000})

    assert response.status_code == 400
    assert "search_after" in response.json()["message"]


# ---------------------------------------------------------------- other endpoints

def test_get_one_user_wraps_it_in_source_or_answers_404(start_moesif, moesif_session):
    server = start_moesif([user("usr/1", email="a@example.com")])

    found = moesif_session.get(f"{server.url}/v1/search/~/users/usr%2F1")
    missing = moesif_session.get(f"{server.url}/v1/search/~/users/usr_2")

    assert found.json() == {"_id": "usr/1", "_source": {"user_id": "usr/1",
                                                        "email": "a@example.com"}}
    assert missing.status_code == 404
    assert "usr_2" in missing.json()["message"]


def test_count_answers_the_number_of_matches(start_moesif, moesif_session):
    server = start_moesif([user("usr_a", company_id="cmp_1"), user("usr_b", company_id="cmp_1"),
                           user("usr_c", company_id="cmp_2")])

    response = moesif_session.post(f"{server.url}/v1/search/~/count/users",
                                   json={"query": {"term": {"company_id.raw": "cmp_1"}}})

    assert response.json() == {"count": 2}


def test_mapping_lists_every_top_level_field_with_a_type(start_moesif, moesif_session):
    server = start_moesif([], [{"company_id": "cmp_1", "modified_time": START, "ttfhw": 12},
                               {"company_id": "cmp_2", "metadata": {"name": "Acme"},
                                "ttfhw": 1.5}])

    mapping = moesif_session.get(f"{server.url}/v1/search/~/mappings/companies/properties").json()

    assert set(mapping) == {"company_id", "modified_time", "ttfhw", "metadata"}
    assert mapping["modified_time"] == {"type": "date"}
    assert mapping["ttfhw"] == {"type": "long"}
    assert mapping["metadata"] == {"type": "object"}
    assert mapping["company_id"]["fields"]["raw"] == {"type": "keyword"}


# ---------------------------------------------------------------- control and connections

def test_upsert_and_delete_change_what_the_next_search_sees(start_moesif, search):
    server = start_moesif([user("usr_a", plan="free"), user("usr_b")])
    search(server, {"sort": SORT})  # caches the result

    server.upsert_user(user("usr_a", plan="growth"))
    server.upsert_user(user("usr_c"))
    server.delete_user("usr_b")
    result = search(server, {"sort": SORT})

    assert ids(result) == ["usr_a", "usr_c"]
    assert result["hits"]["hits"][0]["_source"]["plan"] == "growth"


def test_control_api_over_http_upserts_and_reads_the_log(start_moesif, moesif_session):
    server = start_moesif([])
    control = f"{server.url}/_sandbox"

    requests.post(f"{control}/users", json=user("usr_new"))
    requests.post(f"{control}/companies", json={"company_id": "cmp_new"})
    moesif_session.post(f"{server.url}/v1/search/~/search/users", json={"size": 5})
    log = requests.get(f"{control}/requests").json()
    requests.post(f"{control}/reset-log")

    assert server.collections["users"].get("usr_new") is not None
    assert server.collections["companies"].get("cmp_new") is not None
    assert [(entry["path"], entry["body"], entry["status"]) for entry in log] == [
        ("/v1/search/~/search/users", {"size": 5}, 200)]
    assert server.requests == []


def test_request_log_records_method_body_status_and_time(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])

    moesif_session.post(f"{server.url}/v1/search/~/search/users?debug=1", json={"size": 1})
    entry = server.requests[0]

    assert {key: entry[key] for key in ("method", "path", "query", "body", "status")} == {
        "method": "POST", "path": "/v1/search/~/search/users", "query": {"debug": "1"},
        "body": {"size": 1}, "status": 200}
    assert isinstance(entry["at"], float)


def test_connections_are_kept_alive_between_requests(start_moesif):
    server = start_moesif([user("usr_a")])
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=5)
    headers = {"Authorization": "Bearer test-moesif-key", "Content-Type": "application/json"}

    connection.request("POST", "/v1/search/~/search/users", body=b"{}", headers=headers)
    connection.getresponse().read()
    first_socket = connection.sock
    connection.request("POST", "/v1/search/~/search/users", body=b"{}", headers=headers)
    second = connection.getresponse()
    second.read()
    second_socket = connection.sock
    connection.close()

    assert second.status == 200
    assert first_socket is not None and second_socket is first_socket


def test_stopping_cuts_keep_alive_connections(start_moesif, moesif_session):
    server = start_moesif([user("usr_a")])
    moesif_session.post(f"{server.url}/v1/search/~/search/users", json={})

    server.stop()

    with pytest.raises(requests.ConnectionError):
        moesif_session.post(f"{server.url}/v1/search/~/search/users", json={}, timeout=2)
