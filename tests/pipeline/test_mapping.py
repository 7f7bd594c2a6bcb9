"""The contract of trait-mapping.md, as examples: one test per row and per value rule."""

from collections import Counter

import orjson
import pytest

import moesif_segment_sync
from moesif_segment_sync.pipeline.mapping import (
    Identify,
    Rejected,
    RejectKind,
    Warn,
    company_traits,
    identify,
)
from moesif_segment_sync.pipeline.models import IdentifyMessage

WINDOW_END = "2026-11-25T01:00:00.000Z"
LIBRARY = {"name": "moesif-segment-sync", "version": moesif_segment_sync.__version__}
BARE_CONTEXT = {"active": False, "library": LIBRARY}
# The user's own data: sent as it is, nested nulls included.
PASS_THROUGH = {
    ("traits", "metadata"),
    ("traits", "clearbit"),
    ("traits", "last24HourAggResults"),
    ("traits", "company", "metadata"),
}


def build(record, company=None, warnings=None):
    """The raw result of ``identify`` for one record, with the run's window end."""
    return identify(record, company, default_timestamp=WINDOW_END,
                    warnings=Counter() if warnings is None else warnings)


def sent(record, company=None, warnings=None) -> dict:
    """The message as sent, checked against the output schema and the no-null rule."""
    result = build(record, company, warnings)
    assert isinstance(result, Identify), result
    message = orjson.loads(result.body)
    IdentifyMessage.model_validate(message)
    assert_no_nulls(message)
    assert (result.user_id, result.message_id) == (message["userId"], message["messageId"])
    return message


def rejected(record) -> Rejected:
    result = build(record)
    assert isinstance(result, Rejected), result
    return result


def company_trait(record, warnings=None) -> dict:
    """``traits.company`` of a user of this company, as it is sent."""
    company = company_traits(record, Counter() if warnings is None else warnings)
    assert isinstance(company, dict), company
    return sent({"user_id": "u1", "company_id": record["company_id"]}, company)["traits"]["company"]


def assert_no_nulls(value, path=()):
    if path in PASS_THROUGH:
        return
    assert value is not None, f"null at {'.'.join(path)}"
    if isinstance(value, dict):
        for key, inner in value.items():
            assert_no_nulls(inner, (*path, key))
    elif isinstance(value, list):
        for inner in value:
            assert_no_nulls(inner, path)


# ---------------------------------------------------------------- the message


def test_type_is_identify():
    assert sent({"user_id": "u1"})["type"] == "identify"


def test_user_id_is_the_moesif_user_id():
    assert sent({"user_id": "usr_12345"})["userId"] == "usr_12345"


def test_timestamp_is_the_modified_time_in_utc():
    message = sent({"user_id": "u1", "modified_time": "2026-11-25T00:44:03.4640000Z"})
    assert message["timestamp"] == "2026-11-25T00:44:03.464Z"


def test_timestamp_falls_back_to_the_window_end_when_modified_time_is_absent():
    assert sent({"user_id": "u1"})["timestamp"] == WINDOW_END


def test_message_id_starts_with_the_integration_namespace():
    assert sent({"user_id": "u1"})["messageId"].startswith("moesif-segment-sync")


def test_message_id_is_at_most_100_characters_even_for_a_long_user_id():
    message = sent({"user_id": "u" * 300, "email": "ada@example.com"})
    assert len(message["messageId"]) <= 100


def test_same_content_gives_the_same_message_id():
    first = sent({"user_id": "u1", "email": "ada@example.com",
                  "metadata": {"plan": "pro", "seats": 3}})
    again = sent({"metadata": {"seats": 3, "plan": "pro"},
                  "email": "ada@example.com", "user_id": "u1"})
    assert first["messageId"] == again["messageId"]


@pytest.mark.parametrize(
    "change",
    [{"email": "ada@example.org"},
     {"metadata": {"plan": "enterprise", "seats": 3}},
     {"modified_time": "2026-11-25T00:44:03.465Z"},
     {"company_id": "c2"}],
    ids=["email", "nested-metadata", "modified-time", "company"],
)
def test_a_trait_change_gives_a_new_message_id(change):
    record = {"user_id": "u1", "email": "ada@example.com", "company_id": "c1",
              "modified_time": "2026-11-25T00:44:03.464Z", "metadata": {"plan": "pro", "seats": 3}}
    assert sent(record)["messageId"] != sent(record | change)["messageId"]


def test_a_joined_company_change_gives_a_new_message_id():
    user = {"user_id": "u1", "company_id": "c1"}
    before = sent(user, {"id": "c1", "name": "Acme"})
    after = sent(user, {"id": "c1", "name": "Acme Corp"})
    assert before["messageId"] != after["messageId"]


def test_a_context_change_gives_a_new_message_id():
    before = sent({"user_id": "u1", "ip_address": "203.0.113.7"})
    after = sent({"user_id": "u1", "ip_address": "203.0.113.8"})
    assert before["messageId"] != after["messageId"]


def test_changes_to_never_sent_fields_keep_the_message_id():
    before = sent({"user_id": "u1", "session_token": ["tok-1"], "app_id": "app-1"})
    after = sent({"user_id": "u1", "session_token": ["tok-2"], "app_id": "app-2"})
    assert before["messageId"] == after["messageId"]


def test_context_ip_is_the_ip_address():
    assert sent({"user_id": "u1", "ip_address": "203.0.113.7"})["context"]["ip"] == "203.0.113.7"


def test_context_location_maps_the_geo_ip_fields():
    message = sent({"user_id": "u1", "geo_ip": {
        "city_name": "London", "country_name": "United Kingdom", "region_name": "England",
        "latitude": 51.5072, "longitude": -0.1276,
    }})
    assert message["context"]["location"] == {
        "city": "London", "country": "United Kingdom", "region": "England",
        "latitude": 51.5072, "longitude": -0.1276,
    }


def test_context_timezone_is_the_geo_ip_timezone():
    message = sent({"user_id": "u1", "geo_ip": {"timezone": "Europe/London"}})
    assert message["context"] == {**BARE_CONTEXT, "timezone": "Europe/London"}


def test_context_user_agent_is_the_user_agent_string():
    agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    assert sent({"user_id": "u1", "user_agent_string": agent})["context"]["userAgent"] == agent


def test_context_active_is_false():
    assert sent({"user_id": "u1"})["context"]["active"] is False


def test_context_library_names_this_project_and_its_version():
    assert sent({"user_id": "u1"})["context"]["library"] == LIBRARY


# ---------------------------------------------------------------- traits


def test_trait_id_is_the_user_id():
    assert sent({"user_id": "usr_12345"})["traits"]["id"] == "usr_12345"


def test_trait_created_at_is_the_created_timestamp():
    traits = sent({"user_id": "u1", "created": "2023-07-27T21:52:58.0990000Z"})["traits"]
    assert traits["createdAt"] == "2023-07-27T21:52:58.099Z"


def test_trait_modified_time_is_the_modified_time_timestamp():
    traits = sent({"user_id": "u1", "modified_time": "2023-07-27T21:55:19.464"})["traits"]
    assert traits["modifiedTime"] == "2023-07-27T21:55:19.464Z"


def test_trait_first_seen_time_is_the_first_seen_time_timestamp():
    traits = sent({"user_id": "u1", "first_seen_time": "2026-11-25T02:44:03.464+02:00"})["traits"]
    assert traits["firstSeenTime"] == "2026-11-25T00:44:03.464Z"


def test_trait_last_seen_time_is_the_last_seen_time_timestamp():
    traits = sent({"user_id": "u1", "last_seen_time": 1795564800123})["traits"]
    assert traits["lastSeenTime"] == "2026-11-25T00:00:00.123Z"


def test_trait_name_is_the_user_name_trimmed():
    assert sent({"user_id": "u1", "name": "  Ada Lovelace "})["traits"]["name"] == "Ada Lovelace"


def test_trait_email_is_trimmed_and_keeps_its_case():
    traits = sent({"user_id": "u1", "email": " Ada.Lovelace@Example.COM "})["traits"]
    assert traits["email"] == "Ada.Lovelace@Example.COM"


def test_trait_username_is_the_user_name_field():
    assert sent({"user_id": "u1", "user_name": "ada"})["traits"]["username"] == "ada"


def test_trait_company_is_the_joined_company():
    company = company_traits({"company_id": "c1", "metadata": {"name": "Acme"}}, Counter())
    traits = sent({"user_id": "u1", "company_id": "c1"}, company)["traits"]
    assert traits["company"] == {"id": "c1", "name": "Acme", "metadata": {"name": "Acme"}}


def test_trait_campaign_maps_the_utm_fields():
    traits = sent({"user_id": "u1", "campaign": {
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "launch",
        "utm_term": "api analytics", "utm_content": "banner", "referrer": "https://example.com/a",
        "referring_domain": "example.com", "gclid": "Cj0KCQ",
    }})["traits"]
    assert traits["campaign"] == {
        "source": "google", "medium": "cpc", "name": "launch", "term": "api analytics",
        "content": "banner", "referrer": "https://example.com/a",
        "referringDomain": "example.com", "gclid": "Cj0KCQ",
    }


def test_trait_clearbit_is_passed_through():
    clearbit = {"person": {"employment": {"title": "Engineer"}}, "company": {"sector": "Tech"}}
    assert sent({"user_id": "u1", "clearbit": clearbit})["traits"]["clearbit"] == clearbit


def test_trait_last_24_hour_agg_results_are_passed_through():
    results = {"event_count": 1234, "error_rate": 0.02, "by_route": {"/v1/items": 1200}}
    traits = sent({"user_id": "u1", "last_24h_agg_results": results})["traits"]
    assert traits["last24HourAggResults"] == results


def test_trait_metadata_is_passed_through_with_its_key_names():
    metadata = {"plan_name": "pro", "billing": {"seat_count": 3, "is_annual": True}, "tags": ["a"]}
    assert sent({"user_id": "u1", "metadata": metadata})["traits"]["metadata"] == metadata


def test_trait_user_agent_maps_the_parsed_fields():
    traits = sent({"user_id": "u1", "user_agent": {
        "name": "Chrome", "major": "120", "minor": "0", "os": "Mac OS X 10.15",
        "os_name": "Mac OS X", "os_major": "10", "os_minor": "15", "device": "Other",
    }})["traits"]
    assert traits["userAgent"] == {
        "name": "Chrome", "major": "120", "minor": "0", "os": "Mac OS X 10.15",
        "osName": "Mac OS X", "osMajor": "10", "osMinor": "15", "device": "Other",
    }


# ---------------------------------------------------------------- traits.company


def test_company_id_is_the_company_id():
    assert company_trait({"company_id": "c1"}) == {"id": "c1"}


def test_company_name_is_the_metadata_name():
    assert company_trait({"company_id": "c1", "metadata": {"name": "Acme"}})["name"] == "Acme"


def test_company_created_is_the_created_timestamp():
    company = company_trait({"company_id": "c1", "created": "2023-07-27T21:52:58.0990000Z"})
    assert company == {"id": "c1", "created": "2023-07-27T21:52:58.099Z"}


def test_company_modified_time_is_the_modified_time_timestamp():
    company = company_trait({"company_id": "c1", "modified_time": "2023-07-27T21:55:19.464"})
    assert company == {"id": "c1", "modifiedTime": "2023-07-27T21:55:19.464Z"}


def test_company_first_seen_time_is_the_first_seen_time_timestamp():
    company = company_trait({"company_id": "c1",
                             "first_seen_time": "2026-11-25T02:44:03.464+02:00"})
    assert company == {"id": "c1", "firstSeenTime": "2026-11-25T00:44:03.464Z"}


def test_company_last_seen_time_is_the_last_seen_time_timestamp():
    company = company_trait({"company_id": "c1", "last_seen_time": 1795564800123})
    assert company == {"id": "c1", "lastSeenTime": "2026-11-25T00:00:00.123Z"}


def test_company_ip_address_is_the_ip_address():
    company = company_trait({"company_id": "c1", "ip_address": "198.51.100.4"})
    assert company == {"id": "c1", "ipAddress": "198.51.100.4"}


def test_company_domain_is_the_company_domain_before_the_domain_name():
    company = company_trait({"company_id": "c1", "company_domain": "acme.com",
                             "domain_name": "acme.io"})
    assert company == {"id": "c1", "companyDomain": "acme.com"}


def test_company_domain_falls_back_to_the_domain_name():
    company = company_trait({"company_id": "c1", "domain_name": "acme.io"})
    assert company == {"id": "c1", "companyDomain": "acme.io"}


def test_company_domain_falls_back_to_the_domain_name_when_blank():
    company = company_trait({"company_id": "c1", "company_domain": "  ", "domain_name": "acme.io"})
    assert company == {"id": "c1", "companyDomain": "acme.io"}


def test_company_ttfhw_is_integer_seconds():
    assert company_trait({"company_id": "c1", "ttfhw": 42}) == {"id": "c1", "ttfhw_s": 42}


def test_company_metadata_is_passed_through():
    metadata = {"plan_name": "enterprise", "billing": {"seat_count": 40}}
    company = company_trait({"company_id": "c1", "metadata": metadata})
    assert company == {"id": "c1", "metadata": metadata}


# ---------------------------------------------------------------- values: timestamps


def test_unparseable_timestamp_drops_only_that_trait_with_a_warning():
    warnings = Counter()
    traits = sent({"user_id": "u1", "created": "last tuesday",
                   "last_seen_time": "2026-11-25T00:44:03.464Z"}, warnings=warnings)["traits"]
    assert traits == {"id": "u1", "lastSeenTime": "2026-11-25T00:44:03.464Z"}
    assert warnings == Counter({Warn.BAD_TIMESTAMP: 1})


def test_each_unparseable_timestamp_counts_a_warning():
    warnings = Counter()
    sent({"user_id": "u1", "created": "soon", "first_seen_time": "later"}, warnings=warnings)
    assert warnings == Counter({Warn.BAD_TIMESTAMP: 2})


def test_unparseable_modified_time_falls_back_to_the_window_end():
    warnings = Counter()
    message = sent({"user_id": "u1", "modified_time": "not a time"}, warnings=warnings)
    assert message["timestamp"] == WINDOW_END
    assert message["traits"] == {"id": "u1"}
    assert warnings == Counter({Warn.BAD_TIMESTAMP: 1})


def test_unparseable_company_timestamp_drops_only_that_field_with_a_warning():
    warnings = Counter()
    company = company_trait({"company_id": "c1", "created": "soon",
                             "modified_time": "2026-11-25T00:44:03.464Z"}, warnings)
    assert company == {"id": "c1", "modifiedTime": "2026-11-25T00:44:03.464Z"}
    assert warnings == Counter({Warn.BAD_TIMESTAMP: 1})


# ---------------------------------------------------------------- values: absent and null


def test_null_fields_are_left_out():
    warnings = Counter()
    message = sent({
        "user_id": "u1", "company_id": None, "email": None, "name": None, "first_name": None,
        "last_name": None, "user_name": None, "metadata": None, "campaign": None,
        "ip_address": None, "geo_ip": None, "user_agent": None, "user_agent_string": None,
        "created": None, "first_seen_time": None, "last_seen_time": None, "modified_time": None,
        "clearbit": None, "last_24h_agg_results": None,
    }, warnings=warnings)
    assert (message["traits"], message["context"]) == ({"id": "u1"}, BARE_CONTEXT)
    assert warnings == Counter()


def test_blank_string_fields_are_left_out():
    warnings = Counter()
    message = sent({
        "user_id": "u1", "company_id": " ", "email": "", "name": "  ", "first_name": "",
        "last_name": " ", "user_name": "", "ip_address": " ", "user_agent_string": "",
        "created": "", "first_seen_time": " ", "last_seen_time": "", "modified_time": "  ",
    }, warnings=warnings)
    assert (message["traits"], message["context"]) == ({"id": "u1"}, BARE_CONTEXT)
    assert warnings == Counter()


def test_empty_object_fields_are_left_out():
    message = sent({
        "user_id": "u1", "metadata": {}, "campaign": {}, "geo_ip": {}, "user_agent": {},
        "clearbit": {}, "last_24h_agg_results": {},
    })
    assert (message["traits"], message["context"]) == ({"id": "u1"}, BARE_CONTEXT)


def test_blank_company_fields_are_left_out():
    company = company_trait({"company_id": "c1", "ip_address": " ", "company_domain": "",
                             "domain_name": " ", "metadata": {}, "created": ""})
    assert company == {"id": "c1"}


def test_campaign_whose_every_field_is_blank_is_left_out():
    traits = sent({"user_id": "u1", "campaign": {"utm_source": " ", "utm_medium": None}})["traits"]
    assert traits == {"id": "u1"}


def test_user_agent_whose_every_field_is_absent_is_left_out():
    traits = sent({"user_id": "u1", "user_agent": {"name": None, "os": ""}})["traits"]
    assert traits == {"id": "u1"}


def test_location_whose_every_field_is_absent_is_left_out():
    message = sent({"user_id": "u1", "geo_ip": {"city_name": "", "latitude": None,
                                                "timezone": "Europe/London"}})
    assert message["context"] == {**BARE_CONTEXT, "timezone": "Europe/London"}


def test_pass_through_objects_keep_nested_nulls():
    metadata = {"plan": None, "limits": {"seats": None}, "note": "", "extra": {}}
    clearbit = {"person": None, "company": {"sector": None}}
    results = {"event_count": None}
    traits = sent({"user_id": "u1", "metadata": metadata, "clearbit": clearbit,
                   "last_24h_agg_results": results})["traits"]
    assert traits == {"id": "u1", "metadata": metadata, "clearbit": clearbit,
                      "last24HourAggResults": results}


def test_company_metadata_keeps_nested_nulls():
    metadata = {"plan": None, "billing": {"seats": None}}
    assert company_trait({"company_id": "c1", "metadata": metadata}) == {
        "id": "c1", "metadata": metadata,
    }


# ---------------------------------------------------------------- values: fallbacks


def test_email_falls_back_to_metadata_email_when_absent():
    traits = sent({"user_id": "u1", "metadata": {"email": "ada@example.com"}})["traits"]
    assert traits["email"] == "ada@example.com"


def test_email_falls_back_to_metadata_email_when_blank():
    traits = sent({"user_id": "u1", "email": "  ",
                   "metadata": {"email": "ada@example.com"}})["traits"]
    assert traits["email"] == "ada@example.com"


def test_metadata_email_is_trimmed_and_keeps_its_case():
    traits = sent({"user_id": "u1", "metadata": {"email": " Ada@Example.com "}})["traits"]
    assert traits["email"] == "Ada@Example.com"


def test_user_email_wins_over_metadata_email():
    traits = sent({"user_id": "u1", "email": "ada@example.com",
                   "metadata": {"email": "old@example.com"}})["traits"]
    assert traits["email"] == "ada@example.com"


def test_name_falls_back_to_metadata_name_when_absent():
    traits = sent({"user_id": "u1", "metadata": {"name": "Ada Lovelace"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_name_falls_back_to_metadata_name_when_blank():
    traits = sent({"user_id": "u1", "name": " ", "metadata": {"name": "Ada Lovelace"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_user_name_wins_over_metadata_name():
    traits = sent({"user_id": "u1", "name": "Ada Lovelace",
                   "metadata": {"name": "Countess of Lovelace"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_metadata_name_wins_over_first_and_last_name():
    traits = sent({"user_id": "u1", "first_name": "Ada", "last_name": "King",
                   "metadata": {"name": "Ada Lovelace"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_name_is_first_and_last_name_when_there_is_no_name():
    traits = sent({"user_id": "u1", "first_name": "Ada", "last_name": "Lovelace"})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_name_from_first_and_last_name_is_trimmed():
    traits = sent({"user_id": "u1", "first_name": " Ada ", "last_name": " Lovelace "})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_first_name_without_last_name_is_the_whole_name():
    assert sent({"user_id": "u1", "first_name": " Ada "})["traits"]["name"] == "Ada"


def test_last_name_without_first_name_is_the_whole_name():
    traits = sent({"user_id": "u1", "first_name": "  ", "last_name": "Lovelace"})["traits"]
    assert traits["name"] == "Lovelace"


def test_name_falls_back_to_metadata_first_and_last_name():
    traits = sent({"user_id": "u1",
                   "metadata": {"first_name": "Ada", "last_name": "Lovelace"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_top_level_first_and_last_name_win_over_metadata_ones():
    traits = sent({"user_id": "u1", "first_name": "Ada", "last_name": "Lovelace",
                   "metadata": {"first_name": "Augusta", "last_name": "King"}})["traits"]
    assert traits["name"] == "Ada Lovelace"


def test_username_falls_back_to_metadata_username_when_absent():
    traits = sent({"user_id": "u1", "metadata": {"username": "ada"}})["traits"]
    assert traits["username"] == "ada"


def test_username_falls_back_to_metadata_username_when_blank():
    traits = sent({"user_id": "u1", "user_name": " ", "metadata": {"username": "ada"}})["traits"]
    assert traits["username"] == "ada"


# ---------------------------------------------------------------- values: never sent


def test_never_sent_user_fields_appear_nowhere_in_the_message():
    message = sent({
        "user_id": "u1", "session_token": ["secret-token"], "app_id": "secret-app",
        "org_id": "secret-org", "body": {"payload": "secret-body"},
        "subscriptions": [{"id": "secret-subscription"}], "favourite_colour": "secret-colour",
        "identified_user_id": "secret-identified",
    })
    assert (message["traits"], message["context"]) == ({"id": "u1"}, BARE_CONTEXT)
    body = orjson.dumps(message)
    for field in (b"session_token", b"app_id", b"org_id", b"body", b"subscriptions",
                  b"favourite_colour", b"identified_user_id", b"secret"):
        assert field not in body


def test_unlisted_fields_of_mapped_objects_are_not_sent():
    message = sent({
        "user_id": "u1",
        "geo_ip": {"city_name": "London", "ip": "203.0.113.7", "region_code": "ENG",
                   "postal_code": "N1", "country_code2": "GB", "continent_code": "EU",
                   "location": {"lat": 51.5, "lon": -0.1}, "dma_code": 0},
        "campaign": {"utm_source": "google", "landing_page": "/pricing"},
        "user_agent": {"name": "Chrome", "patch": "6099"},
    })
    assert message["context"]["location"] == {"city": "London"}
    assert message["traits"]["campaign"] == {"source": "google"}
    assert message["traits"]["userAgent"] == {"name": "Chrome"}


def test_never_sent_company_fields_appear_nowhere_in_the_company():
    company = company_trait({
        "company_id": "c1", "session_token": ["secret-token"], "app_id": "secret-app",
        "org_id": "secret-org", "subscriptions": [{"id": "secret-subscription"}],
        "campaign": {"utm_source": "secret-campaign"}, "industry_code": "secret-industry",
    })
    assert company == {"id": "c1"}


# ---------------------------------------------------------------- values: company join


def test_user_in_a_company_missing_from_the_run_gets_its_id_and_a_warning():
    warnings = Counter()
    traits = sent({"user_id": "u1", "company_id": "c9"}, None, warnings)["traits"]
    assert traits["company"] == {"id": "c9"}
    assert warnings == Counter({Warn.UNKNOWN_COMPANY: 1})


def test_user_without_company_id_gets_no_company_trait():
    warnings = Counter()
    traits = sent({"user_id": "u1"}, None, warnings)["traits"]
    assert traits == {"id": "u1"}
    assert warnings == Counter()


# ---------------------------------------------------------------- values: ttfhw


def test_company_ttfhw_float_is_rounded_down():
    assert company_trait({"company_id": "c1", "ttfhw": 12.9}) == {"id": "c1", "ttfhw_s": 12}


def test_company_ttfhw_of_zero_is_kept():
    assert company_trait({"company_id": "c1", "ttfhw": 0}) == {"id": "c1", "ttfhw_s": 0}


def test_company_negative_ttfhw_is_dropped_with_a_warning():
    warnings = Counter()
    assert company_trait({"company_id": "c1", "ttfhw": -5}, warnings) == {"id": "c1"}
    assert warnings == Counter({Warn.BAD_TTFHW: 1})


def test_company_non_numeric_ttfhw_is_dropped_with_a_warning():
    warnings = Counter()
    assert company_trait({"company_id": "c1", "ttfhw": "fast"}, warnings) == {"id": "c1"}
    assert warnings == Counter({Warn.BAD_TTFHW: 1})


# ---------------------------------------------------------------- values: rejects


def test_record_without_user_id_is_rejected():
    reject = rejected({"email": "ada@example.com"})
    assert reject.kind == RejectKind.NO_USER_ID
    assert "user_id" in reject.reason and "missing" in reject.reason


def test_record_with_null_user_id_is_rejected():
    reject = rejected({"user_id": None, "email": "ada@example.com"})
    assert reject.kind == RejectKind.NO_USER_ID
    assert "user_id" in reject.reason


def test_record_with_blank_user_id_is_rejected():
    reject = rejected({"user_id": "   ", "email": "ada@example.com"})
    assert reject.kind == RejectKind.NO_USER_ID
    assert "user_id" in reject.reason and "blank" in reject.reason


def test_record_with_non_string_user_id_is_rejected():
    reject = rejected({"user_id": 12345, "email": "ada@example.com"})
    assert reject.kind == RejectKind.NO_USER_ID
    assert "user_id" in reject.reason and "string" in reject.reason


@pytest.mark.parametrize("record", [["u1"], "u1", 42, None],
                         ids=["array", "string", "number", "null"])
def test_record_that_is_not_an_object_is_rejected(record):
    reject = rejected(record)
    assert reject.kind == RejectKind.NOT_AN_OBJECT
    assert "not an object" in reject.reason


def _with_blob(length: int) -> dict:
    return {"user_id": "u1", "metadata": {"blob": "x" * length}}


def _size_with_blob(length: int) -> int:
    """Bytes of the message for ``_with_blob(length)``: one more byte per character."""
    return len(build(_with_blob(0)).body) + length


def test_message_over_32_kb_is_rejected_with_its_size():
    blob = 33_000 - _size_with_blob(0)
    reject = rejected(_with_blob(blob))
    assert reject.kind == RejectKind.OVERSIZE
    assert reject.entity_id == "u1"
    assert reject.reason == ("message is 33,000 bytes of JSON, over Segment's 32 KB limit "
                             "(32,768 bytes)")


def test_message_under_32_kb_is_sent():
    blob = 32_000 - _size_with_blob(0)
    result = build(_with_blob(blob))
    assert isinstance(result, Identify)
    assert len(result.body) == 32_000


# ---------------------------------------------------------------- values: trait count


def test_300_traits_after_flattening_metadata_are_sent_with_a_warning():
    warnings = Counter()
    metadata = {f"field_{i}": i for i in range(299)}
    traits = sent({"user_id": "u1", "metadata": metadata}, warnings=warnings)["traits"]
    assert traits == {"id": "u1", "metadata": metadata}
    assert warnings == Counter({Warn.TOO_MANY_TRAITS: 1})


def test_299_traits_are_sent_without_a_warning():
    warnings = Counter()
    sent({"user_id": "u1", "metadata": {f"field_{i}": i for i in range(298)}}, warnings=warnings)
    assert warnings == Counter()


def test_nested_metadata_counts_each_leaf_as_a_trait():
    warnings = Counter()
    metadata = {"usage": {f"field_{i}": i for i in range(299)}}
    sent({"user_id": "u1", "metadata": metadata}, warnings=warnings)
    assert warnings == Counter({Warn.TOO_MANY_TRAITS: 1})


# ---------------------------------------------------------------- values: wrong types


def test_wrong_typed_email_is_dropped_with_a_warning():
    warnings = Counter()
    traits = sent({"user_id": "u1", "email": 123, "name": "Ada"}, warnings=warnings)["traits"]
    assert traits == {"id": "u1", "name": "Ada"}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})


def test_wrong_typed_campaign_is_dropped_with_a_warning():
    warnings = Counter()
    traits = sent({"user_id": "u1", "campaign": "x", "name": "Ada"}, warnings=warnings)["traits"]
    assert traits == {"id": "u1", "name": "Ada"}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})


def test_wrong_typed_metadata_is_dropped_with_a_warning():
    warnings = Counter()
    traits = sent({"user_id": "u1", "metadata": "vip", "name": "Ada"}, warnings=warnings)["traits"]
    assert traits == {"id": "u1", "name": "Ada"}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})


def test_wrong_typed_campaign_field_drops_only_that_field():
    warnings = Counter()
    traits = sent({"user_id": "u1", "campaign": {"utm_source": 5, "utm_medium": "cpc"}},
                  warnings=warnings)["traits"]
    assert traits["campaign"] == {"medium": "cpc"}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})


def test_wrong_typed_latitude_drops_only_the_latitude():
    warnings = Counter()
    message = sent({"user_id": "u1", "geo_ip": {"city_name": "London", "latitude": "51.5072",
                                                "longitude": -0.1276}}, warnings=warnings)
    assert message["context"]["location"] == {"city": "London", "longitude": -0.1276}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})


def test_wrong_typed_company_field_is_dropped_with_a_warning():
    warnings = Counter()
    company = company_trait({"company_id": "c1", "company_domain": 7,
                             "domain_name": "acme.io"}, warnings)
    assert company == {"id": "c1", "companyDomain": "acme.io"}
    assert warnings == Counter({Warn.WRONG_TYPE: 1})
