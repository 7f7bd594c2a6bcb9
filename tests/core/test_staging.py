"""Staged files: lossless, compressed, atomic, on any fsspec URL."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from moesif_segment_sync.errors import StagingError
from moesif_segment_sync.staging import Staging, loads

ODD = [
    {"user_id": "u1", "metadata": {"nested": {"deep": [1, 2.5, None, True]}}},
    {"user_id": "u2", "huge": 2 ** 80, "nan": float("nan"), "inf": float("-inf")},
    {"user_id": "u3", "surrogate": "\ud800", "emoji": "\U0001f600", "ctl": "a\u0000b"},
    "not an object",
    [1, 2],
]


@pytest.fixture(params=["file", "memory"])
def stage(request, tmp_path):
    root = tmp_path.as_uri() if request.param == "file" else f"memory://{tmp_path.name}"
    return Staging(root, "moesif_to_segment", "manual__2026-11-25T01:00:00+00:00")


def test_round_trip_is_lossless_even_for_values_json_cannot_carry(stage):
    with stage.writer("raw.jsonl.gz") as out:
        for record in ODD:
            out.write(record, lenient=True)
    back = [loads(line)[0] for line in stage.lines("raw.jsonl.gz")]
    assert back[0] == ODD[0]
    assert back[1]["huge"] == 2 ** 80 and math.isnan(back[1]["nan"])
    assert back[1]["inf"] == float("-inf")
    assert back[2] == ODD[2]
    assert back[3:] == ODD[3:]


def test_a_file_appears_only_when_complete(stage):
    with pytest.raises(RuntimeError), stage.writer("half.jsonl.gz") as out:
        out.write({"user_id": "u1"})
        raise RuntimeError("killed")
    assert not stage.exists("half.jsonl.gz")
    assert stage.fs.ls(stage.dir) == []


def test_a_rewrite_replaces_the_previous_file(stage):
    for count in (3, 1):
        with stage.writer("users.jsonl.gz") as out:
            for n in range(count):
                out.write({"n": n})
    assert list(stage.lines("users.jsonl.gz")) == [b'{"n":0}']


def test_staged_files_are_plain_gzip_json_lines(tmp_path):
    stage = Staging(tmp_path.as_uri(), "dag", "run")
    with stage.writer("users.jsonl.gz") as out:
        out.write({"user_id": "u1"})
    with gzip.open(tmp_path / "dag" / "run" / "users.jsonl.gz", "rt") as raw:
        assert [json.loads(line) for line in raw] == [{"user_id": "u1"}]


def test_run_ids_become_one_safe_path_segment(tmp_path):
    stage = Staging(tmp_path.as_uri(), "dag", "../../etc/x")
    assert stage.dir == f"{tmp_path}/dag/.._.._etc_x"


def test_a_root_under_a_file_fails_with_the_path(tmp_path):
    (tmp_path / "blocker").write_text("")
    stage = Staging((tmp_path / "blocker").as_uri(), "dag", "run")
    with pytest.raises(StagingError, match="cannot write .*blocker/dag/run/audit.json"):
        stage.write_json("audit.json", {})


def test_a_missing_staged_file_is_named(stage):
    with pytest.raises(StagingError, match="users.jsonl.gz is missing"):
        list(stage.lines("users.jsonl.gz"))
