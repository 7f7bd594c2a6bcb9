"""MoesifHook and SegmentHook: reading their connections (new types and the older http),
failing fast on the wrong type, the Test button's answers against the stand-ins over real
HTTP, and their registration as a provider's connection types."""

from __future__ import annotations

import json
import warnings

import pytest

from moesif_segment_sync.airflow.hooks import (
    MOESIF_HOST,
    SEGMENT_REGIONS,
    MoesifHook,
    SegmentHook,
    find_connection,
)
from moesif_segment_sync.errors import ConfigError
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, stand_ins


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


# ---------------------------------------------------------------- reading connections

def test_a_moesif_connection_with_its_page_size(monkeypatch):
    set_conn(monkeypatch, "moesif_default", conn_type="moesif", host="https://api.moesif.com",
             password="mk-1", extra={"page_size": 250})
    endpoint = MoesifHook().endpoint()
    assert (endpoint.url, endpoint.secret, endpoint.page_size) == (MOESIF_HOST, "mk-1", 250)


def test_a_moesif_connection_without_host_uses_the_management_api(monkeypatch):
    set_conn(monkeypatch, "other_moesif", conn_type="moesif", password="mk-1")
    endpoint = MoesifHook("other_moesif").endpoint()
    assert (endpoint.url, endpoint.page_size) == (MOESIF_HOST, None)


def test_the_older_http_connections_keep_working(monkeypatch):
    set_conn(monkeypatch, "moesif_default", conn_type="http", host="127.0.0.1", port=8081,
             schema="http", password="mk-1")
    set_conn(monkeypatch, "segment_default", conn_type="http",
             host="https://events.eu1.segmentapis.com", extra={"write_key": "wk-1"})
    assert MoesifHook().endpoint().url == "http://127.0.0.1:8081"
    segment = SegmentHook().endpoint()
    assert (segment.url, segment.secret) == ("https://events.eu1.segmentapis.com", "wk-1")


@pytest.mark.parametrize(("extra", "url"), [
    ({}, SEGMENT_REGIONS["US"]),
    ({"region": "EU"}, "https://events.eu1.segmentapis.com"),
    ({"region": "eu"}, "https://events.eu1.segmentapis.com"),
    ({"extra__segment__region": "EU"}, "https://events.eu1.segmentapis.com"),
])
def test_a_segment_connection_by_region(monkeypatch, extra, url):
    set_conn(monkeypatch, "segment_default", conn_type="segment", password="wk-1", extra=extra)
    assert SegmentHook().endpoint().url == url


def test_a_segment_host_wins_over_the_region(monkeypatch):
    set_conn(monkeypatch, "segment_default", conn_type="segment", password="wk-1",
             host="http://127.0.0.1:9000", extra={"region": "EU"})
    assert SegmentHook().endpoint().url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(("hook", "fields", "message"), [
    (MoesifHook, {"conn_type": "postgres", "host": "db", "password": "x"},
     "Airflow connection 'moesif_default' is of type 'postgres': it must be a Moesif "
     "connection (type 'moesif'; the older 'http' works too)"),
    (SegmentHook, {"conn_type": "moesif", "password": "x"},
     "Airflow connection 'segment_default' is of type 'moesif': it must be a Segment "
     "connection (type 'segment'; the older 'http' works too)"),
    (MoesifHook, {"conn_type": "moesif", "host": "https://api.moesif.com"},
     "Airflow connection 'moesif_default' has no password: set it to the Moesif Management "
     "API key (scopes read:users and read:companies)"),
    (MoesifHook, {"conn_type": "moesif", "password": "x", "extra": {"page_size": 0}},
     "Airflow connection 'moesif_default': page_size must be a whole number from 1 to 10000"),
    (SegmentHook, {"conn_type": "segment", "password": "x", "extra": {"region": "APAC"}},
     "Airflow connection 'segment_default': region must be US or EU, got 'APAC'"),
])
def test_a_wrong_connection_fails_fast_naming_it(monkeypatch, hook, fields, message):
    set_conn(monkeypatch, hook.default_conn_name, **fields)
    with pytest.raises(ConfigError) as error:
        hook().endpoint()
    assert str(error.value) == message


def test_a_missing_connection_says_how_to_add_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SEGMENT_DEFAULT", raising=False)
    with pytest.raises(ConfigError) as error:
        SegmentHook().endpoint()
    assert str(error.value).startswith(
        "Airflow connection 'segment_default' is not set: add it under Admin > Connections "
        "(type Segment), or export AIRFLOW_CONN_SEGMENT_DEFAULT='{\"conn_type\": \"segment\"")


def test_looking_a_connection_up_warns_of_nothing(monkeypatch):
    """Task logs used to open with a deprecation warning from this lookup."""
    monkeypatch.delenv("AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert find_connection("moesif_segment_audit") is None
    assert [str(w.message) for w in caught] == []


# ---------------------------------------------------------------- the Test button

@pytest.fixture(scope="module")
def stand_in_urls():
    with stand_ins(generate(20, seed=3, start=DATA_SPAN[0], end=DATA_SPAN[1])) as (m, s):
        yield m, s


def test_a_good_moesif_key_tests_ok(monkeypatch, stand_in_urls):
    moesif, _ = stand_in_urls
    set_conn(monkeypatch, "moesif_default", conn_type="moesif", host=moesif.url,
             password=moesif.api_key)
    moesif.clear_log()
    ok, message = MoesifHook().test_connection()
    assert ok, message
    assert message.startswith("Moesif: ")
    assert "the key is accepted for users (read:users)" in message
    assert "the key is accepted for companies (read:companies)" in message
    assert len(moesif.requests) == 2  # one one-record search per entity


def test_a_wrong_moesif_key_names_the_problem(monkeypatch, stand_in_urls):
    moesif, _ = stand_in_urls
    set_conn(monkeypatch, "moesif_default", conn_type="moesif", host=moesif.url,
             password="mk-wrong")
    ok, message = MoesifHook().test_connection()
    assert not ok
    assert "Moesif refused the key for users (401" in message
    assert message.count(". Fix: check that moesif_default's password is a current Management "
                         "API key") == 1
    assert "mk-wrong" not in message


def test_a_segment_connection_tests_without_sending_an_event(monkeypatch, stand_in_urls):
    _, segment = stand_in_urls
    set_conn(monkeypatch, "segment_default", conn_type="segment", host=segment.url,
             password=segment.write_key)
    segment.clear_log()
    ok, message = SegmentHook().test_connection()
    assert ok, message
    assert "answered 200" in message and "does not prove the write key is right" in message
    assert [(r["path"], r["n_messages"]) for r in segment.requests] == [("/v1/batch", 0)]
    assert segment.delivered == {}


def test_a_wrong_segment_key_names_the_problem(monkeypatch, stand_in_urls):
    _, segment = stand_in_urls
    set_conn(monkeypatch, "segment_default", conn_type="segment", host=segment.url,
             password="wk-wrong")
    ok, message = SegmentHook().test_connection()
    assert not ok
    assert "Segment answered 401 to an empty batch" in message
    assert message.endswith(". Fix: set segment_default's password to the source's write key")


# ---------------------------------------------------------------- registration

def test_airflow_knows_both_connection_types():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hooks = manager.hooks
    assert (hooks["moesif"].hook_class_name, hooks["moesif"].connection_id_attribute_name) == (
        "moesif_segment_sync.airflow.hooks.MoesifHook", "moesif_conn_id")
    assert hooks["segment"].hook_name == "Segment"
    behaviour = manager.field_behaviours["segment"]
    assert behaviour["hidden_fields"] == ["schema", "login", "port", "extra"]
    assert behaviour["relabeling"]["password"] == "Write key"
    widgets = manager.connection_form_widgets
    assert widgets["extra__segment__region"].field["schema"]["enum"] == ["US", "EU"]
    assert widgets["extra__moesif__page_size"].field["schema"]["title"] == "Page size"
