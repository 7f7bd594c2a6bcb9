"""The history's read side: exports neutralise spreadsheet formulas, name their files from a
safe alphabet, stream rejects page by page, and the listing reads its index."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sqlalchemy as sa

from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore, RunKey, runs

KEY = RunKey("moesif_to_segment", "manual__hostile")


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3",
                                   "@SUM(A1)", "\tcmd", "\r=1"])
def test_a_cell_that_would_start_a_formula_gets_a_quote_first(value):
    assert history.neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["plain", " =1+1", "a=b", "", "'=already", "\n=1", "١=1"])
def test_other_cells_are_left_as_they_are(value):
    assert history.neutralise(value) == value


def test_csv_quotes_every_cell_and_neutralises_text_not_numbers():
    rows = [{"seq": -1, "entity_id": "=cmd|' /C calc'!A0", "reason": 'a "quoted", reason',
             "raw_record": {"name": "-x"}}]
    text = "".join(history.to_csv(rows, ["seq", "entity_id", "reason", "raw_record"]))
    assert text == ('"seq","entity_id","reason","raw_record"\r\n'
                    '"-1","\'=cmd|\' /C calc\'!A0","a ""quoted"", reason","{""name"":""-x""}"\r\n')
    assert list(csv.reader(io.StringIO(text)))[1] == [
        "-1", "'=cmd|' /C calc'!A0", 'a "quoted", reason', '{"name":"-x"}']


def test_csv_comes_in_pieces_not_one_string_per_row():
    rows = [{"reason": "x" * 100} for _ in range(2000)]
    pieces = list(history.to_csv(rows, ["reason"], piece=64 * 1024))
    assert len(pieces) == 4  # each piece stops at the first row that reaches 64 KB
    assert all(64 * 1024 <= len(piece) < 64 * 1024 + 104 for piece in pieces[:-1])
    assert "".join(pieces) == '"reason"\r\n' + 2000 * f'"{"x" * 100}"\r\n'


def test_jsonl_comes_in_pieces_of_whole_lines():
    rows = [{"n": n} for n in range(10_000)]
    pieces = list(history.to_jsonl(rows, piece=64 * 1024))
    assert len(pieces) == 2 and all(piece.endswith("\n") for piece in pieces)
    assert [json.loads(line) for line in "".join(pieces).splitlines()] == rows


def test_jsonl_keeps_values_exactly():
    rows = [{"reason": "=1+1 <script>\u202e"}]
    assert [json.loads(line) for line in history.to_jsonl(rows)] == rows


@pytest.mark.parametrize(("run_id", "filename"), [
    ("scheduled__2026-11-25T01:00:00+00:00", "scheduled__2026-11-25T01-00-00-00-00-rejects.csv"),
    ('x"; filename=evil.exe', "x---filename-evil.exe-rejects.csv"),
    ("a\r\nSet-Cookie: x=1", "a--Set-Cookie--x-1-rejects.csv"),
    ("../../etc/passwd", "-..-etc-passwd-rejects.csv"),
    ("..", "run-rejects.csv"),
    ("run\u202egpj.exe", "run-gpj.exe-rejects.csv"),
    ("é" * 300, "-" * 100 + "-rejects.csv"),
])
def test_the_download_name_uses_a_safe_alphabet(run_id, filename):
    assert history.attachment(run_id, "rejects", "csv") == f'attachment; filename="{filename}"'


def _store(tmp_path, count: int) -> AuditStore:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.replace_rejects(KEY, ({"entity": "user", "entity_id": f"u{n}", "kind": "no_email",
                                 "reason": "r", "raw_location": "f#L1", "raw_record": "{}"}
                                for n in range(count)))
    return store


@pytest.mark.parametrize("count", [0, 3, 4, 7])
def test_every_reject_is_read_once_in_order_across_pages(tmp_path, count):
    rows = list(history.iter_rejects(_store(tmp_path, count), KEY, page=3))
    assert [row["seq"] for row in rows] == list(range(count))
    assert rows[:1] == ([{"seq": 0, "entity": "user", "entity_id": "u0", "kind": "no_email",
                          "reason": "r", "raw_location": "f#L1", "raw_record": "{}"}]
                        if count else [])


def test_each_page_of_rejects_starts_after_the_last_seq_read(tmp_path):
    store = _store(tmp_path, 7)
    after: list[int] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, params, *_: after.append(params[2]))
    list(history.iter_rejects(store, KEY, page=3))
    assert after == [-1, 2, 5]  # (dag_id, run_id, seq > ?, LIMIT, OFFSET)


@pytest.mark.parametrize(("sort", "index"), [("started", "ix_sync_runs_started"),
                                             ("window", "ix_sync_runs_window")])
def test_the_runs_listing_reads_its_index_in_order(tmp_path, sort, index):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    first = runs.c.window_start if sort == "window" else runs.c.started_at
    query = (sa.select(runs).where(runs.c.dag_id == KEY.dag_id, runs.c.status == "failed")
             .order_by(first.desc().nulls_last(), runs.c.finished_at.desc(),
                       runs.c.run_id.desc()).limit(50).offset(5000))
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as db:
        plan = " ".join(row[-1] for row in db.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))
    assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan


@pytest.mark.parametrize(("count", "offset", "seqs"), [(7, 0, [0, 1, 2]), (7, 5, [5, 6]),
                                                       (7, 9, []), (0, 0, [])])
def test_a_page_of_rejects_starts_at_its_offset_and_counts_them_all(tmp_path, count, offset,
                                                                    seqs):
    page = history.list_rejects(_store(tmp_path, count), KEY, limit=3, offset=offset)
    assert (page.total, [row.seq for row in page.rejects]) == (count, seqs)
