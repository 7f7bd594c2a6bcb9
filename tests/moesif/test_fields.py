"""The seam for inferred Moesif field names: an override renames, a wrong key names the setting."""

from __future__ import annotations

import pytest

from moesif_segment_sync.errors import ConfigError
from moesif_segment_sync.moesif.fields import FieldNames
from moesif_segment_sync.settings import load_settings


def test_an_override_reads_the_accounts_field_under_the_mappings_name():
    fields = FieldNames.from_overrides({"users.last_24h_agg_results": "rollup_24h",
                                        "companies.ttfhw": "time_to_first_hello"})
    user = {"user_id": "u1", "rollup_24h": {"events": 3}, "last_24h_agg_results": {"old": 1}}
    assert fields.canonical("users", user) == {
        "user_id": "u1", "rollup_24h": {"events": 3}, "last_24h_agg_results": {"events": 3}}
    assert fields.canonical("companies", {"company_id": "c", "time_to_first_hello": 9}) == {
        "company_id": "c", "time_to_first_hello": 9, "ttfhw": 9}
    assert fields.actual("users", "clearbit") == "clearbit"


def test_without_overrides_records_pass_untouched():
    record = {"user_id": "u1", "clearbit": {"a": 1}}
    assert FieldNames.from_overrides({}).canonical("users", record) is record


def test_an_unknown_field_names_the_setting_and_the_choices():
    with pytest.raises(ConfigError, match="MOESIF_SEGMENT_FIELD_NAMES: 'users.email' is not an "
                                          "inferred field; the ones that can be renamed are "
                                          "users.created, users.clearbit"):
        FieldNames.from_overrides({"users.email": "mail"})


def test_the_setting_is_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_FIELD_NAMES", '{"users.clearbit": "enrichment"}')
    assert load_settings().field_names == {"users.clearbit": "enrichment"}
