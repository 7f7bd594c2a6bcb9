"""`python -m moesif_segment_sync audit ...` on a seeded store, in each format."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from moesif_segment_sync.ops.cli import main
from tests.history_seed import BACKFILL, MANUAL, SCHEDULED, SCHEDULED_ROW, seed


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    seed(url)
    return url


def run(url: str, *args: str) -> str:
    out = io.StringIO()
    assert main(["--url", url, "audit", *args], out=out) == 0
    return out.getvalue()


HEADER = ("run_id                                mode       status   failed_task  started_at      "
          "      window_start          considered  sent  would_send  unchanged  rejected  batches  "
          "duration_s\n")
ROWS = {
    BACKFILL: f"{BACKFILL}   backfill   success               2026-11-26T07:00:00Z  "
              "2026-11-24T00:00:00Z  5           5     0           0          0         1        "
              "3.0\n",
    MANUAL: f"{MANUAL}     manual     failed   audit        2026-11-25T03:10:00Z  "
            "2026-11-25T02:00:00Z  4           0     3           0          1         1        "
            "2.0\n",
    SCHEDULED: f"{SCHEDULED}  scheduled  success               2026-11-25T01:00:05Z  "
               "2026-11-25T00:00:00Z  10          7     0           2          1         1        "
               "4.5\n",
}


def test_runs_as_a_table_the_last_started_first(url):
    # The backfill of an older window ran last: an operator's log puts it on top.
    assert run(url, "runs") == HEADER + ROWS[BACKFILL] + ROWS[MANUAL] + ROWS[SCHEDULED]


def test_runs_as_a_table_newest_window_first_on_request(url):
    assert run(url, "runs", "--sort", "window") == (
        HEADER + ROWS[MANUAL] + ROWS[SCHEDULED] + ROWS[BACKFILL])


def test_runs_as_json_with_filters(url):
    rows = json.loads(run(url, "runs", "--since", "2026-11-25", "--status", "success",
                          "--format", "json"))
    assert [row["run_id"] for row in rows] == [SCHEDULED]
    assert rows[0] == SCHEDULED_ROW


def test_runs_as_csv_until_excludes_its_day(url):
    rows = list(csv.DictReader(io.StringIO(run(url, "runs", "--until", "2026-11-25",
                                               "--format", "csv"))))
    assert [(r["run_id"], r["mode"], r["sent"], r["error"]) for r in rows] == [
        (BACKFILL, "backfill", "5", "")]


def test_runs_by_mode(url):
    rows = json.loads(run(url, "runs", "--mode", "manual", "--format", "json"))
    assert [(r["run_id"], r["dry_run"], r["would_send"]) for r in rows] == [(MANUAL, True, 3)]


def test_show_a_run_with_its_ledger(url):
    text = run(url, "show", SCHEDULED)
    assert text.splitlines()[:3] == [
        f"run_id            {SCHEDULED}",
        "mode              scheduled",
        "status            success"]
    assert "rejected_by_kind  {\"no_user_id\": 1}" in text
    assert text.endswith("ledger\nshard  batch_no  status  messages  bytes  attempts  error\n"
                         "0      1         sent    7         4000   2\n")


def test_show_as_json(url):
    detail = json.loads(run(url, "show", SCHEDULED, "--format", "json"))
    assert detail["ledger"] == [{
        "shard": 0, "batch_no": 1, "status": "sent", "messages": 7, "bytes": 4000, "attempts": 2,
        "first_message_id": "moesif-segment-sync-aaa",
        "last_message_id": "moesif-segment-sync-ggg", "error": None,
        "finished_at": detail["ledger"][0]["finished_at"]}]
    assert detail["timings"] == {"extract_users": 1.25, "extract_companies": 0.5,
                                 "transform": 2.0, "load": 0.75}


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_rejects_in_each_format(url, fmt):
    text = run(url, "rejects", SCHEDULED, "--format", fmt)
    if fmt == "table":
        assert text == ("seq  entity  entity_id  kind        reason\n"
                        "0    user               no_user_id  user_id is blank\n")
    elif fmt == "json":
        assert json.loads(text) == [{
            "seq": 0, "entity": "user", "entity_id": None, "kind": "no_user_id",
            "reason": "user_id is blank", "raw_location": "file:///staging/rejects.jsonl.gz#L1",
            "raw_record": '{"user_id":"  ","email":"x@example.com"}'}]
    else:
        assert list(csv.reader(io.StringIO(text))) == [
            ["seq", "entity", "entity_id", "kind", "reason", "raw_location", "raw_record"],
            ["0", "user", "", "no_user_id", "user_id is blank",
             "file:///staging/rejects.jsonl.gz#L1", '{"user_id":"  ","email":"x@example.com"}']]


def test_an_unknown_run_is_an_error_not_a_traceback(url):
    result = subprocess.run([sys.executable, "-m", "moesif_segment_sync", "--url", url, "audit",
                             "show", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "error: no run 'nope' of moesif_to_segment in the audit store\n"
