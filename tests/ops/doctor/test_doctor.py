"""`python -m moesif_segment_sync doctor` over real HTTP against the stand-ins.

Each check has its OK path and its FAIL or WARN path; the connections are the
DAG's own, given as AIRFLOW_CONN_* variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from moesif_segment_sync.ops import doctor
from moesif_segment_sync.settings import load_settings
from sandbox.environment import connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.ops.doctor.support import MOESIF_KEY, USERS, WRITE_KEY, company, user


def test_a_healthy_account_passes_every_moesif_check(start_doctor):
    run = start_doctor()
    found = run.findings()
    assert run.code == 0
    moesif = {check: f["status"] for check, f in found.items() if check.startswith("moesif.")}
    assert {check for check, status in moesif.items() if status not in ("OK", "INFO")} == set()
    field_checks = [f for check, f in found.items() if check.startswith("moesif.field.")]
    # Every field the mapping reads, company_domain and domain_name as one check.
    assert len(field_checks) == len(doctor.MAPPED["users"]) + len(doctor.MAPPED["companies"]) - 1
    assert {f["status"] for f in field_checks} == {"OK"}
    assert found["moesif.field.users.clearbit"]["message"] == (
        "the account's users have 'clearbit' (an inferred name, confirmed)")
    assert found["moesif.page_size"]["data"] == {
        "configured": 1000, "largest_accepted": 1000, "smallest_refused": None, "exact": True}
    assert found["moesif.hits_total.users"]["data"] == {"form": "integer", "total": 5}
    assert found["moesif.get_by_id.users"]["data"] == {"shape": "wrapped"}
    assert found["moesif.ignored.users"]["data"] == {
        "fields": ["identified_user_id", "session_token"]}
    assert found["moesif.ignored.companies"]["data"] == {"fields": ["subscriptions"]}


def test_every_request_is_a_read_within_the_budget(start_doctor):
    run = start_doctor()
    run.findings()
    requests = run.moesif.requests
    assert len(requests) <= load_settings().doctor_budget
    assert {(r["method"], r["path"]) for r in requests} == {
        ("POST", "/v1/search/~/search/users"), ("POST", "/v1/search/~/search/companies"),
        ("GET", "/v1/search/~/mappings/users/properties"),
        ("GET", "/v1/search/~/mappings/companies/properties"),
        ("GET", "/v1/search/~/users/usr_1"), ("GET", "/v1/search/~/companies/cmp_1")}
    assert run.segment.requests == []


def test_a_wrong_key_fails_users_and_companies_each_with_its_scope(start_doctor):
    run = start_doctor(api_key="mk-some-other-key")
    found = run.findings()
    assert run.code == 1
    users, companies = found["moesif.access.users"], found["moesif.access.companies"]
    assert (users["status"], companies["status"]) == ("FAIL", "FAIL")
    assert users["message"] == ("Moesif refused the key for users (401: Unauthorized. Missing "
                                "required scopes: read:users): it lacks the read:users scope, "
                                "or the key is wrong")
    assert companies["data"] == {"status": 401, "missing_scope": "read:companies"}
    assert "Management API key" in users["fix"] and "read:companies" in users["fix"]
    # Nothing more is asked of an account the key cannot read.
    assert len(run.moesif.requests) == 2
    assert not any(check.startswith(("moesif.field.", "moesif.page_size")) for check in found)


def test_a_key_without_read_companies_fails_only_companies(start_doctor):
    run = start_doctor()
    run.moesif.inject(401, path_contains="/companies", times=10,
                      body={"message": "Unauthorized. Missing required scopes: read:companies"})
    found = run.findings()
    assert run.code == 1
    assert found["moesif.access.users"]["status"] == "OK"
    assert found["moesif.access.companies"]["status"] == "FAIL"
    assert found["moesif.access.companies"]["fix"].startswith(
        "give the key the read:companies scope")
    assert found["moesif.field.users.email"]["status"] == "OK"
    assert "moesif.mapping.companies" not in found


def test_a_field_the_data_omits_is_a_warning_naming_it(start_doctor):
    run = start_doctor(users=[user(n, user_agent_string=None) for n in range(1, 4)])
    found = run.findings()
    missing = found["moesif.field.users.user_agent_string"]
    assert run.code == 0
    assert missing["status"] == "WARN"
    assert missing["message"] == ("the account's users have no field 'user_agent_string': "
                                  "context.userAgent will be absent")
    assert found["moesif.field.users.user_agent"]["status"] == "OK"


def test_a_company_needs_only_one_of_company_domain_and_domain_name(start_doctor):
    run = start_doctor(companies=[company(1, company_domain=None, domain_name="e.example")])
    assert run.findings()["moesif.field.companies.company_domain/domain_name"]["status"] == "OK"
    run = start_doctor(companies=[company(1, company_domain=None)])
    assert run.findings()["moesif.field.companies.company_domain/domain_name"]["message"] == (
        "the account's companies have no field 'company_domain' or 'domain_name': "
        "traits.company.companyDomain will be absent")


def test_a_missing_inferred_field_names_the_setting_and_the_likely_candidate(start_doctor):
    users = [user(n, last_24h_agg_results=None, rollup_24h={"events": 3}, clearbit=None,
                  clearbit_enrichment={"a": 1}) for n in range(1, 4)]
    run = start_doctor(users=users, companies=[company(1, ttfhw=None)])
    found = run.findings()
    rollup = found["moesif.field.users.last_24h_agg_results"]
    assert rollup["status"] == "WARN"
    assert rollup["fix"] == ("if 'rollup_24h' is it, set MOESIF_SEGMENT_FIELD_NAMES="
                             "'{\"users.last_24h_agg_results\": \"rollup_24h\"}'")
    assert found["moesif.field.users.clearbit"]["data"]["candidates"] == ["clearbit_enrichment"]
    # No candidate: the placeholder, and a word that the data may simply not exist.
    assert found["moesif.field.companies.ttfhw"]["fix"] == (
        "if the account keeps it under another name, set MOESIF_SEGMENT_FIELD_NAMES="
        "'{\"companies.ttfhw\": \"<your field>\"}'; if the account has no such data, "
        "nothing to do")
    # One variable holds every rename, so the doctor gives the whole value.
    assert found["moesif.field_names"]["fix"] == (
        "after checking them, set MOESIF_SEGMENT_FIELD_NAMES='{\"users.clearbit\": "
        "\"clearbit_enrichment\", \"users.last_24h_agg_results\": \"rollup_24h\"}'")


def test_following_the_advice_turns_the_warning_into_ok(start_doctor, monkeypatch):
    users = [user(n, last_24h_agg_results=None, rollup_24h={"events": 3}) for n in range(1, 4)]
    run = start_doctor(users=users)
    monkeypatch.setenv("MOESIF_SEGMENT_FIELD_NAMES",
                       '{"users.last_24h_agg_results": "rollup_24h"}')
    found = run.findings()
    assert found["moesif.field.users.last_24h_agg_results"] | {"data": None} == {
        "check": "moesif.field.users.last_24h_agg_results", "status": "OK",
        "message": "users.last_24h_agg_results is read from the account's field 'rollup_24h' "
                   "(MOESIF_SEGMENT_FIELD_NAMES)", "fix": "", "data": None}
    assert "rollup_24h" not in found["moesif.ignored.users"]["data"]["fields"]
    assert "moesif.field_names" not in found


def test_a_smaller_page_size_cap_is_found_exactly(start_doctor):
    run = start_doctor(max_page_size=137)
    found = run.findings()
    page = found["moesif.page_size"]
    assert run.code == 1
    assert page["status"] == "FAIL"
    assert page["data"] == {"configured": 1000, "largest_accepted": 137,
                            "smallest_refused": 138, "exact": True}
    assert page["fix"] == "set MOESIF_SEGMENT_PAGE_SIZE=137"
    assert "(400: size 1000 is over the largest page size, 137)" in page["message"]
    assert len(run.moesif.requests) <= load_settings().doctor_budget


def test_the_configured_page_size_is_the_upper_bound(start_doctor, monkeypatch):
    run = start_doctor(max_page_size=137)
    monkeypatch.setenv("MOESIF_SEGMENT_PAGE_SIZE", "100")
    assert run.findings()["moesif.page_size"]["status"] == "OK"


def test_a_small_budget_gives_bounds_and_says_how_to_measure_more(start_doctor):
    run = start_doctor(max_page_size=137)
    page = run.findings("--budget", "10")["moesif.page_size"]
    assert len(run.moesif.requests) == 10
    assert page["status"] == "FAIL"
    assert page["data"]["exact"] is False
    low, high = page["data"]["largest_accepted"], page["data"]["smallest_refused"]
    assert low <= 137 < high
    assert page["fix"] == (f"set MOESIF_SEGMENT_PAGE_SIZE={low}, or raise "
                           "MOESIF_SEGMENT_DOCTOR_BUDGET to measure the exact limit")


def test_a_budget_too_small_for_everything_skips_rather_than_overspends(start_doctor):
    run = start_doctor()
    found = run.findings("--budget", "3")
    assert len(run.moesif.requests) == 3
    assert found["moesif.get_by_id.users"]["status"] == "INFO"
    assert found["moesif.page_size"]["status"] == "INFO"
    assert found["moesif.budget"]["message"] == (
        "3 of 3 Moesif requests used; 4 question(s) left out")


def test_hits_total_in_another_form_is_a_warning(start_doctor):
    run = start_doctor()
    run.moesif.inject(200, path_contains="/search/users", body={
        "hits": {"total": {"value": 5, "relation": "eq"}, "hits": [
            {"_id": "usr_1", "_source": user(1), "sort": [1, "usr_1"]}]}})
    found = run.findings()
    assert found["moesif.hits_total.users"]["status"] == "WARN"
    assert found["moesif.hits_total.users"]["data"] == {"form": "object"}
    assert found["moesif.hits_total.companies"]["status"] == "OK"


def test_get_by_id_answering_flat_is_recognised(start_doctor):
    run = start_doctor()
    run.moesif.inject(200, path_contains="/v1/search/~/users/usr_1", body=user(1))
    found = run.findings()
    assert found["moesif.get_by_id.users"]["data"] == {"shape": "flat"}
    assert found["moesif.get_by_id.users"]["status"] == "OK"


def test_a_moesif_that_does_not_answer_fails(start_doctor):
    run = start_doctor()
    run.moesif.stop()
    found = run.findings()
    assert run.code == 1
    assert found["moesif.access.users"]["status"] == "FAIL"
    assert found["moesif.access.users"]["message"].startswith("no answer: ConnectionError")


def test_send_test_posts_one_empty_batch_and_says_what_a_200_proves(start_doctor):
    run = start_doctor()
    found = run.findings("--send-test")
    sent = found["segment.send_test"]
    assert sent["status"] == "OK"
    assert "does not prove the write key is right" in sent["message"]
    assert "Segment answers 200 to almost anything" in sent["message"]
    stats = run.segment.stats()
    assert (stats["batches"], stats["messages_received"], stats["accepted"]) == (1, 0, 0)


def test_without_send_test_nothing_reaches_segment(start_doctor):
    run = start_doctor()
    found = run.findings()
    assert found["segment.send_test"]["status"] == "INFO"
    assert run.segment.requests == []


def test_send_test_with_a_refused_write_key_fails(start_doctor):
    run = start_doctor(write_key="wk-another-source")
    found = run.findings("--send-test")
    assert run.code == 1
    assert found["segment.send_test"]["status"] == "FAIL"
    assert found["segment.send_test"]["message"].startswith("Segment answered 401")
    assert found["segment.send_test"]["fix"] == (
        "set segment_default's password to the source's write key")


def test_the_stand_in_host_is_flagged_as_neither_region(start_doctor):
    found = start_doctor().findings()
    assert found["segment.host"]["status"] == "WARN"
    assert "https://events.eu1.segmentapis.com" in found["segment.host"]["fix"]


def test_a_missing_connection_fails_with_the_variable_to_set(start_doctor, monkeypatch):
    run = start_doctor()
    monkeypatch.delenv("AIRFLOW_CONN_SEGMENT_DEFAULT")
    found = run.findings()
    assert run.code == 1
    assert found["segment.connection"]["status"] == "FAIL"
    assert "export AIRFLOW_CONN_SEGMENT_DEFAULT=" in found["segment.connection"]["message"]
    assert found["moesif.access.users"]["status"] == "OK"


def test_a_bad_setting_fails_and_the_checks_go_on_with_defaults(start_doctor, monkeypatch):
    run = start_doctor()
    monkeypatch.setenv("MOESIF_SEGMENT_FIELD_NAMES", '{"users.email": "mail"}')
    found = run.findings()
    assert run.code == 1
    assert found["settings"]["status"] == "FAIL"
    assert "'users.email' is not an inferred field" in found["settings"]["message"]
    assert found["moesif.field.users.email"]["status"] == "OK"


def test_the_text_report_has_one_line_per_check_and_a_summary(start_doctor):
    run = start_doctor(users=[user(n, user_agent_string=None) for n in range(1, 3)])
    text = run.text()
    lines = text.splitlines()
    assert run.code == 0
    assert lines[0] == ("OK    settings: MOESIF_SEGMENT_* settings are valid: page size 1000, "
                        "field renames none")
    assert ("WARN  moesif.field.users.user_agent_string: the account's users have no field "
            "'user_agent_string': context.userAgent will be absent  Fix: nothing to set if no "
            "user has it yet; this name is documented, so the mapping has no rename for it"
            ) in lines
    assert lines[-1].endswith(": no failures")
    assert len(lines) == len(run.findings()) + 1


def test_the_json_report(start_doctor):
    run = start_doctor(max_page_size=50)
    report = json.loads(run.text("--format", "json"))
    assert run.code == 1
    assert report["ok"] is False
    assert set(report["counts"]) == {"OK", "WARN", "FAIL", "INFO"}
    assert report["counts"]["FAIL"] == 1
    assert sum(report["counts"].values()) == len(report["findings"])
    assert all(set(f) == {"check", "status", "message", "fix", "data"}
               for f in report["findings"])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_key_appears_in_any_output(tmp_path, fmt):
    """In a real process, so Airflow's own logging is in stderr too; both APIs quote the key."""
    echo = {"message": f"key {MOESIF_KEY} lacks read:companies"}
    with MoesifStandIn(USERS, [], api_key=MOESIF_KEY, max_page_size=10).start() as moesif, \
            SegmentStandIn("wk-not-this-one").start() as segment:
        moesif.inject(401, path_contains="/companies", times=10, body=echo)
        env = {**os.environ, "AIRFLOW_HOME": str(tmp_path),
               **connection_env(moesif.url, segment.url, moesif_key=MOESIF_KEY,
                                write_key=WRITE_KEY)}
        result = subprocess.run(
            [sys.executable, "-m", "moesif_segment_sync", "doctor", "--send-test",
             "--format", fmt], env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    if fmt == "json":
        assert json.loads(result.stdout)["ok"] is False  # nothing else on stdout
    assert "key *** lacks read:companies" in output
    assert MOESIF_KEY not in output and WRITE_KEY not in output
