"""The history plugin through Airflow's own api-server app: auth, exact JSON, filters, paging,
downloads and the pages."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import quote

import pytest

from tests.history_seed import (
    BACKFILL,
    MANUAL,
    SCHEDULED,
    SCHEDULED_ROW,
    SENT_MESSAGES,
    history_client,
)

ROUTES = ["/segment-sync/runs", f"/segment-sync/runs/{quote(SCHEDULED, safe='')}",
          f"/segment-sync/runs/{quote(SCHEDULED, safe='')}/rejects",
          f"/segment-sync/runs/{quote(SCHEDULED, safe='')}/export/rejects.csv",
          "/segment-sync/ui/", f"/segment-sync/ui/runs/{quote(SCHEDULED, safe='')}"]


@pytest.fixture(scope="module")
def client(airflow_db, tmp_path_factory):
    with history_client(airflow_db, tmp_path_factory.mktemp("history")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def auth(client):
    token = client.post("/auth/token", json={"username": "admin", "password": "admin"})
    assert token.status_code == 201
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_answers_401_without_a_token(client, route):
    response = client.get(route)
    assert response.status_code == 401
    assert SCHEDULED not in response.text


def test_a_forged_token_gets_no_data(client):
    response = client.get("/segment-sync/runs", headers={"Authorization": "Bearer forged"})
    assert response.status_code in (401, 403) and "runs" not in response.text


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_answers_200_with_a_token(client, auth, route):
    assert client.get(route, headers=auth).status_code == 200


def test_the_ui_session_cookie_is_enough(client, auth):
    token = auth["Authorization"].removeprefix("Bearer ")
    client.cookies.set("_token", token)
    try:
        assert client.get("/segment-sync/ui/").status_code == 200
    finally:
        client.cookies.clear()


def test_runs_the_last_started_first_with_exact_fields(client, auth):
    page = client.get("/segment-sync/runs", headers=auth).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    assert [run["run_id"] for run in page["runs"]] == [BACKFILL, MANUAL, SCHEDULED]
    assert page["runs"][2] == SCHEDULED_ROW


def test_runs_newest_window_first_on_request(client, auth):
    page = client.get("/segment-sync/runs?sort=window", headers=auth).json()
    assert [run["run_id"] for run in page["runs"]] == [MANUAL, SCHEDULED, BACKFILL]


@pytest.mark.parametrize(("query", "expected"), [
    ("status=failed", [MANUAL]),
    ("mode=backfill", [BACKFILL]),
    ("since=2026-11-25", [MANUAL, SCHEDULED]),
    ("sort=window&since=2026-11-24", [MANUAL, SCHEDULED, BACKFILL]),
    ("until=2026-11-25", [BACKFILL]),
    ("since=2026-11-25&mode=scheduled&status=success", [SCHEDULED]),
])
def test_filters(client, auth, query, expected):
    page = client.get(f"/segment-sync/runs?{query}", headers=auth).json()
    assert [run["run_id"] for run in page["runs"]] == expected
    assert page["total"] == len(expected)


def test_paging(client, auth):
    first = client.get("/segment-sync/runs?limit=2", headers=auth).json()
    second = client.get("/segment-sync/runs?limit=2&offset=2", headers=auth).json()
    assert [r["run_id"] for r in first["runs"]] == [BACKFILL, MANUAL]
    assert [r["run_id"] for r in second["runs"]] == [SCHEDULED]
    assert first["total"] == second["total"] == 3


def test_bad_filters_are_refused(client, auth):
    assert client.get("/segment-sync/runs?mode=sometimes", headers=auth).status_code == 422
    assert client.get("/segment-sync/runs?limit=0", headers=auth).status_code == 422


def test_one_run_with_its_ledger(client, auth):
    detail = client.get(f"/segment-sync/runs/{quote(SCHEDULED, safe='')}", headers=auth).json()
    assert detail["params"] == {"start": None, "end": None, "full_refresh": False,
                                "dry_run": False, "force": False}
    assert detail["counts"]["warnings"] == {"unknown_company": 1}
    assert [(b["batch_no"], b["status"], b["messages"], b["bytes"], b["attempts"])
            for b in detail["ledger"]] == [(1, "sent", 7, 4000, 2)]


def test_an_unknown_run_is_404(client, auth):
    assert client.get("/segment-sync/runs/nope", headers=auth).status_code == 404


def test_rejects(client, auth):
    page = client.get(f"/segment-sync/runs/{quote(SCHEDULED, safe='')}/rejects",
                      headers=auth).json()
    assert page == {"total": 1, "limit": 100, "offset": 0, "rejects": [{
        "seq": 0, "entity": "user", "entity_id": None, "kind": "no_user_id",
        "reason": "user_id is blank", "raw_location": "file:///staging/rejects.jsonl.gz#L1",
        "raw_record": '{"user_id":"  ","email":"x@example.com"}'}]}


def test_downloads_of_rejects_and_sent_messages(client, auth):
    base = f"/segment-sync/runs/{quote(SCHEDULED, safe='')}/export"
    rejects = client.get(f"{base}/rejects.csv", headers=auth)
    assert rejects.headers["content-disposition"].endswith('-rejects.csv"')
    assert list(csv.reader(io.StringIO(rejects.text)))[1][:5] == [
        "0", "user", "", "no_user_id", "user_id is blank"]
    messages = client.get(f"{base}/messages.jsonl", headers=auth)
    assert [json.loads(line) for line in messages.text.splitlines()] == SENT_MESSAGES
    table = list(csv.DictReader(io.StringIO(client.get(f"{base}/messages.csv",
                                                       headers=auth).text)))
    assert [(row["userId"], json.loads(row["traits"])) for row in table] == [
        ("u1", {"id": "u1", "email": "u1@example.com"}), ("u2", {"id": "u2"})]


def test_the_history_page_lists_the_runs_and_draws_the_chart(client, auth):
    html = client.get("/segment-sync/ui/?mode=scheduled", headers=auth).text
    assert f'data-run-id="{SCHEDULED}"' in html and BACKFILL not in html
    assert '<rect class="sent"' in html and "1 run of moesif_to_segment" in html


def test_the_filter_form_as_a_browser_submits_it(client, auth):
    """Untouched fields arrive as empty strings, which mean "any"."""
    response = client.get("/segment-sync/ui/?since=&until=&status=failed&mode=&sort=started",
                          headers=auth)
    assert response.status_code == 200, response.text
    assert f'data-run-id="{MANUAL}"' in response.text and SCHEDULED not in response.text
    assert "1 run of moesif_to_segment" in response.text


def test_the_run_page_shows_counts_ledger_and_rejects(client, auth):
    html = client.get(f"/segment-sync/ui/runs/{quote(SCHEDULED, safe='')}", headers=auth).text
    assert '<dd data-count="considered">10</dd>' in html
    assert '<dd data-count="sent">7</dd>' in html
    assert "user_id is blank" in html and "x@example.com" in html
    assert "export/messages.jsonl" in html


def test_the_plugin_registers_its_views(client, auth):
    plugins = client.get("/api/v2/plugins", headers=auth).json()["plugins"]
    [ours] = [p for p in plugins if p["name"] == "segment_sync"]
    assert [(v["name"], v["destination"], v["href"]) for v in ours["external_views"]] == [
        ("Segment sync", "nav", "/segment-sync/ui/"),
        ("Segment sync audit", "dag_run", "/segment-sync/ui/runs/{RUN_ID}?dag_id={DAG_ID}")]


# ---------------------------------------------------------------- personal data on the pages

def run_page(client, auth) -> str:
    return client.get(f"/segment-sync/ui/runs/{quote(SCHEDULED, safe='')}", headers=auth).text


def test_the_run_page_says_which_fields_are_hashed(client, auth, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_HASH_FIELDS", '["email", "name"]')
    monkeypatch.setenv("MOESIF_SEGMENT_TRAIT_DENY", '["ip_address"]')
    privacy = re.search(r'<dd id="privacy">(.*?)</dd>', run_page(client, auth), re.S)[1]
    assert privacy == ('hashed fields: email, name; traits sent: all but ip_address '
                       '<span class="muted">(today\'s settings: this run did not record its '
                       'own)</span>')


def test_raw_records_can_be_kept_off_the_pages(client, auth, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_HISTORY_RAW_RECORDS", "false")
    html = run_page(client, auth)
    assert "x@example.com" not in html and 'id="no-raw-records"' in html
    assert "/export/rejects.csv" in html  # the downloads still have them


def test_a_denied_trait_is_left_out_of_the_raw_record_shown(client, auth, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_TRAIT_DENY", '["email"]')
    html = run_page(client, auth)
    assert "<pre>{&#34;user_id&#34;:&#34;  &#34;}</pre>" in html
    assert "x@example.com" not in html
