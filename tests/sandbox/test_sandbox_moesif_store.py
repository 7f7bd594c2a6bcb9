"""The Moesif stand-in's disk store answers the sync's requests with the in-memory bytes."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import orjson
import pytest
import requests

from moesif_segment_sync import moesif as queries
from sandbox import datagen
from sandbox._http import HttpError
from sandbox._json import loads_lenient
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from sandbox.moesif_store import build_store, relayout

START = datetime(2026, 11, 25, tzinfo=UTC)
END = datetime(2026, 11, 25, 1, tzinfo=UTC)
# A part of the generated window, so that queries select some documents and not others.
PART = (datetime(2026, 11, 25, 0, 10, tzinfo=UTC), datetime(2026, 11, 25, 0, 25, tzinfo=UTC))
SORT = [{"modified_time": {"order": "asc"}}, {"_id": {"order": "asc"}}]
ODD_USERS = [
    {"user_id": "usr_000003", "modified_time": "2026-11-25T00:12:00Z", "name": "replaced"},
    ["not", "an", "object"], "a string", {"user_id": "  ", "modified_time": 1764029700000},
    {"user_id": "usr_no_times", "company_id": ["cmp_00001", "cmp_00002"]},
    {"user_id": "usr_nan", "metadata": {"score": float("nan")},
     "last_seen_time": "2026-11-25T00:20:00.1234567"},
    {"user_id": "usr_tie_b", "modified_time": "2026-11-25T00:15:00.000Z"},
    {"user_id": "usr_tie_a", "modified_time": "2026-11-25T00:15:00.000Z"},
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same documents in memory and in a store."""
    data = generate(1_500, seed=3, start=START, end=END)
    users, companies = data.users + ODD_USERS, data.companies
    path = tmp_path_factory.mktemp("store") / "store.sqlite"
    assert build_store(path, users, companies) == {"users": len(users),
                                                   "companies": len(companies)}
    return (MoesifStandIn(users, companies).collections,
            MoesifStandIn(store=str(path)).collections, path)


def untimed(body: bytes) -> bytes:
    return re.sub(rb'^\{"took":\d+,', b'{"took":0,', body)


def pages(collection, query, *, size: int, sort=SORT) -> list[bytes]:
    """Every page of a search_after paging, as the sync pages."""
    out, after = [], None
    while True:
        body = {"size": size, "query": query, "sort": sort}
        if after is not None:
            body["search_after"] = after
        page = collection.search(body, max_page_size=None)
        out.append(untimed(page))
        hits = loads_lenient(page)["hits"]["hits"]
        if len(hits) < size:
            return out
        after = hits[-1]["sort"]


def test_the_syncs_searches_page_identically(pair):
    memory, disk, _ = pair
    changed = [hit["_id"] for page in pages(memory["companies"], queries.changed_in_window(
        *PART), size=50) for hit in orjson.loads(page)["hits"]["hits"]]
    assert changed
    for entity, query in [
            ("users", queries.changed_in_window(*PART)),
            ("users", queries.members_of(changed, not_changed_in=PART)),
            ("users", queries.members_of(["cmp_00001", "cmp_00002"])),
            ("users", queries.everything()),
            ("companies", queries.changed_in_window(*PART)),
            ("companies", queries.companies_by_id(changed[:7] + ["cmp_nowhere"]))]:
        expected = pages(memory[entity], query, size=97)
        assert pages(disk[entity], query, size=97) == expected, query
        assert disk[entity].count(query) == memory[entity].count(query)


def stored_ids(path, collection: str) -> list[str]:
    """The ids of a store's documents in the order of its rows."""
    with closing(sqlite3.connect(path)) as db:
        return [key.decode() for key, in db.execute(
            "SELECT id FROM docs WHERE collection = ? ORDER BY rowid", (collection,))]


def test_a_store_holds_its_rows_in_the_order_a_full_pass_reads_them(pair):
    memory, _, path = pair
    for entity in ("users", "companies"):
        full_pass = [hit["_id"] for page in pages(memory[entity], queries.everything(), size=500)
                     for hit in loads_lenient(page)["hits"]["hits"]]
        assert stored_ids(path, entity) == full_pass


def test_a_store_copied_in_many_slices_has_the_same_rows_and_answers(pair, tmp_path):
    memory, _, path = pair
    copy = tmp_path / "copy.sqlite"
    relayout(path, copy, slice_bytes=50_000)  # about 70 slices of the users

    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT * FROM docs ORDER BY rowid").fetchall()
    with closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT * FROM docs ORDER BY rowid").fetchall() == rows
    disk = MoesifStandIn(store=str(copy)).collections
    for query in (queries.everything(), queries.members_of(["cmp_00001", "cmp_00002"])):
        assert pages(disk["users"], query, size=97) == pages(memory["users"], query, size=97)


def test_other_sorts_offsets_and_lookups_match(pair):
    memory, disk, _ = pair
    sort = [{"last_seen_time": {"order": "desc"}}, {"_id": {"order": "desc"}}]
    assert pages(disk["users"], None, size=333, sort=sort) == pages(memory["users"], None,
                                                                     size=333, sort=sort)
    for body in ({"size": 20, "from": 40, "sort": ["_doc"]}, {"size": 5},
                 {"size": 10, "query": {"bool": {"must_not": [
                     {"range": {"modified_time": {"gte": "2026-11-25T00:05:00Z"}}}]}},
                  "sort": SORT},
                 {"size": 10, "query": {"bool": {"should": [
                     {"exists": {"field": "modified_time"}}, {"ids": {"values": ["usr_nan"]}},
                     {"term": {"user_id.raw": "usr_tie_a"}}], "minimum_should_match": 2}},
                  "sort": SORT}):
        assert untimed(disk["users"].search(body, max_page_size=None)) == untimed(
            memory["users"].search(body, max_page_size=None)), body
    for doc_id in ("usr_000003", "usr_nan", "_doc1501", "usr_no_such"):
        found, held = disk["users"].get(doc_id), memory["users"].get(doc_id)
        assert (found.head if found else None) == (held.head if held else None)
    assert disk["users"].mapping() == memory["users"].mapping()
    assert len(disk["users"]) == len(memory["users"])


def test_a_query_outside_the_disk_subset_is_a_400_and_the_store_is_read_only(pair):
    _, disk, _ = pair
    with pytest.raises(HttpError, match="not supported by the stand-in's disk store"):
        disk["users"].search({"query": {"term": {"email.raw": "x"}}}, max_page_size=None)
    with pytest.raises(HttpError, match="read-only"):
        disk["users"].upsert({"user_id": "new"})


def test_the_server_serves_a_store_over_http(pair):
    _, _, path = pair
    with MoesifStandIn(store=str(path)) as server:
        answer = requests.post(f"{server.url}/v1/search/~/search/users",
                               json={"size": 3, "query": queries.changed_in_window(*PART),
                                     "sort": SORT},
                               headers={"Authorization": "Bearer test-moesif-key"}, timeout=10)
    assert answer.status_code == 200
    assert len(answer.json()["hits"]["hits"]) == 3


def generate_in_parts(path, *, workers: int) -> dict:
    """A 4,000-user account generated in parts of 1,000 users (the part size is a module
    setting read where the parts are cut, in this process)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datagen, "ACCOUNT_PART", 1_000)
        return datagen.generate_account(path, 4_000, seed=5, start=START, end=END,
                                        changed_share=0.05, company_share=0.05,
                                        workers=workers)


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """A generated account in a store, and the counts it says a run should see."""
    path = tmp_path_factory.mktemp("account") / "store.sqlite"
    return path, generate_in_parts(path, workers=2)


def held_documents(path, collection: str) -> list:
    """A store's documents in load order, as the in-memory stand-in would load them."""
    with closing(sqlite3.connect(path)) as db:
        return [loads_lenient(head + b"}")["_source"] for head, in db.execute(
            "SELECT head FROM docs WHERE collection = ? ORDER BY ord", (collection,))]


def test_a_generated_account_has_the_counts_it_says_in_and_out_of_the_window(account):
    path, counts = account
    users, companies = (MoesifStandIn(store=str(path)).collections[name]
                        for name in ("users", "companies"))
    changed = [hit["_id"] for page in pages(companies, queries.changed_in_window(START, END),
                                            size=500)
               for hit in orjson.loads(page)["hits"]["hits"]]

    assert len(users) == 4_000 and len(companies) == counts["companies"] == 200
    assert len(changed) == counts["companies_in_window"] > 0
    assert users.count(queries.changed_in_window(START, END)) == counts["in_window"]
    assert 100 < counts["in_window"] < 300  # 5% of 4,000
    assert users.count(queries.members_of(changed, not_changed_in=(START, END))) == counts[
        "via_company"] > 0
    assert 20 < counts["bad"] < 60  # 1% of 4,000


def test_a_generated_account_answers_as_its_documents_do_in_memory(account):
    path, _ = account
    users, companies = held_documents(path, "users"), held_documents(path, "companies")
    memory = MoesifStandIn(users, companies).collections
    disk = MoesifStandIn(store=str(path)).collections
    changed = [hit["_id"] for page in pages(memory["companies"], queries.changed_in_window(
        START, END), size=50) for hit in orjson.loads(page)["hits"]["hits"]]

    for entity, query in [
            ("users", queries.changed_in_window(START, END)),
            ("users", queries.members_of(changed, not_changed_in=(START, END))),
            ("users", queries.everything()),
            ("companies", queries.everything())]:
        assert pages(disk[entity], query, size=333) == pages(memory[entity], query, size=333)
    for name in ("created", "first_seen_time", "last_seen_time"):
        sort = [{name: {"order": "desc"}}, {"_id": {"order": "asc"}}]
        assert pages(disk["users"], None, size=999, sort=sort) == pages(memory["users"], None,
                                                                         size=999, sort=sort)
    for entity in ("users", "companies"):
        assert disk[entity].mapping() == memory[entity].mapping()
        full_pass = [hit["_id"] for page in pages(memory[entity], queries.everything(), size=500)
                     for hit in loads_lenient(page)["hits"]["hits"]]
        assert stored_ids(path, entity) == full_pass


def test_a_generated_account_is_the_same_whatever_the_number_of_workers(account, tmp_path):
    path, counts = account
    alone = tmp_path / "store.sqlite"

    assert generate_in_parts(alone, workers=1) == counts
    with closing(sqlite3.connect(path)) as db, closing(sqlite3.connect(alone)) as other:
        for query in ("SELECT * FROM docs ORDER BY rowid", "SELECT * FROM mappings",
                      "SELECT * FROM keywords ORDER BY collection, ord, field, key"):
            assert other.execute(query).fetchall() == db.execute(query).fetchall()
    assert list(tmp_path.iterdir()) == [alone]  # the runs are gone
