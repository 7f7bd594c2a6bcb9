"""Hostile values in the audit store (issue 18), through Airflow's own api-server app: the
pages carry them as text, never as markup; the CSV downloads neutralise formulas; JSON Lines
keep them exactly; the download's file name is safe. What a real browser does with the same
pages: tests/browser/test_hostile_data.py."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from tests import hostile_seed as hostile
from tests.history_seed import history_client

RUN = quote(hostile.RUN_ID, safe="")
PAGES = ["/segment-sync/ui/", f"/segment-sync/ui/runs/{RUN}"]
EXPORTS = [f"/segment-sync/runs/{RUN}/export/{what}.{fmt}"
           for what in ("rejects", "messages") for fmt in ("csv", "jsonl")]


@pytest.fixture(scope="module")
def client(airflow_db, tmp_path_factory):
    with history_client(airflow_db, tmp_path_factory.mktemp("hostile"),
                        seed_store=hostile.seed) as test_client:
        token = test_client.post("/auth/token", json={"username": "admin", "password": "admin"})
        test_client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield test_client


class Markup(HTMLParser):
    """The elements and attributes a page declares, and its text as a browser decodes it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_csv(text: str) -> list[dict]:
    csv.field_size_limit(2 * len(hostile.BIG))  # the 1 MB cell; the default stops at 128 KB
    return list(csv.DictReader(io.StringIO(text)))


def parse(html: str) -> Markup:
    page = Markup()
    page.feed(html)
    return page


@pytest.mark.parametrize("path", PAGES)
def test_a_page_has_no_element_or_handler_from_the_data(client, path):
    response = client.get(path)
    assert response.status_code == 200
    page = parse(response.text)
    assert {tag for tag, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "span", "p", "a", "form",
        "label", "input", "select", "option", "button", "div", "svg", "text", "rect", "table",
        "thead", "tbody", "tr", "th", "td", "ul", "li", "dl", "dt", "dd", "details", "summary",
        "pre", "bdi"}
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links and not [href for href in links if not href.startswith(("/", "?"))], links


def test_the_history_shows_the_run_id_as_text_in_the_table_the_link_and_the_chart(client):
    page = parse(client.get("/segment-sync/ui/").text)
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and "data-run-id" in attrs]
    assert [row["data-run-id"] for row in rows] == [hostile.RUN_ID]
    titles = [attrs["title"] for tag, attrs in page.tags if tag == "a" and "title" in attrs]
    assert titles == [hostile.RUN_ID]
    text = "".join(page.text)
    assert f"{hostile.RUN_ID}: sent {len(hostile.USER_IDS) - 1}" in text  # a bar's <title>
    assert text.count(hostile.RUN_ID) == 6  # three bars' titles, two axis labels, the link


def test_the_run_page_shows_every_hostile_value_as_text(client):
    text = "".join(parse(client.get(f"/segment-sync/ui/runs/{RUN}").text).text)
    for value in (hostile.RUN_ID, hostile.ERROR, *hostile.NOTES, hostile.FAILED_TASK,
                  hostile.WARNING_KIND, hostile.STAGE, hostile.LEDGER_ERROR, hostile.JS_URL,
                  hostile.PARAMS["start"], *hostile.USER_IDS, *hostile.REASONS):
        assert value in text, value[:80]


def test_the_rejects_csv_neutralises_formulas_in_every_cell(client):
    rows = read_csv(client.get(EXPORTS[0]).text)
    assert [row["entity_id"] for row in rows] == [
        "'" + value if value[0] in "=+-@\t\r" else value for value in hostile.USER_IDS]
    assert [row["reason"] for row in rows] == [
        "'" + value if value[0] in "=+-@\t\r" else value for value in hostile.REASONS]
    assert [row["raw_record"] for row in rows] == [
        hostile.raw_record(n) for n in range(len(hostile.USER_IDS))]
    assert {row["raw_location"] for row in rows} == {hostile.JS_URL}


def test_the_messages_csv_neutralises_formulas_in_every_cell(client):
    rows = read_csv(client.get(EXPORTS[2]).text)
    assert [row["userId"] for row in rows] == [
        "'" + value if value[0] in "=+-@\t\r" else value for value in hostile.USER_IDS[:-1]]
    assert [json.loads(row["traits"]) for row in rows] == [
        message["traits"] for message in hostile.messages()]


@pytest.mark.parametrize(("path", "field", "expected"), [
    (EXPORTS[1], "entity_id", hostile.USER_IDS),
    (EXPORTS[3], "userId", hostile.USER_IDS[:-1]),
])
def test_json_lines_keep_every_value_exactly(client, path, field, expected):
    lines = client.get(path).text.splitlines()
    assert [json.loads(line)[field] for line in lines] == expected


@pytest.mark.parametrize("path", EXPORTS)
def test_the_download_is_named_from_a_safe_alphabet(client, path):
    response = client.get(path)
    name = path.rsplit("/", 1)[-1]
    assert response.status_code == 200
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]{1,100}-' + re.escape(name) + '"',
                        response.headers["content-disposition"])


def test_the_json_api_returns_the_run_id_exactly(client):
    assert client.get(f"/segment-sync/runs/{RUN}").json()["run_id"] == hostile.RUN_ID
