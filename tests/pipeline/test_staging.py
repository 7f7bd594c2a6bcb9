"""Staged files: lossless, compressed, atomic, on any fsspec URL."""

from __future__ import annotations

import errno
import gzip
import io
import json
import math
import os

import pytest

from moesif_segment_sync.chunking import chunks
from moesif_segment_sync.codec import loads
from moesif_segment_sync.errors import StagingError
from moesif_segment_sync.pipeline.staging import BLOCK_BYTES, Staging

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


def test_lines_longer_than_a_block_and_more_lines_than_a_block_come_back_exactly(stage):
    lines = [b'{"n":%d}' % n for n in range(300_000)]
    lines[1000] = b'{"big":"' + b"x" * (3 * BLOCK_BYTES) + b'"}'
    with stage.writer("big.jsonl.gz") as out:
        for line in lines[:150_000]:
            out.write_line(line)
        out.write_lines(lines[150_000:])

    assert out.lines == 300_000
    assert list(stage.lines("big.jsonl.gz")) == lines
    with stage.fs.open(stage.path("big.jsonl.gz"), "rb") as raw:
        assert gzip.decompress(raw.read()) == b"\n".join(lines) + b"\n"


def test_an_empty_file_is_a_valid_gzip_file_without_lines(stage):
    with stage.writer("empty.jsonl.gz") as out:
        pass

    assert out.lines == 0
    assert list(stage.lines("empty.jsonl.gz")) == []
    with stage.fs.open(stage.path("empty.jsonl.gz"), "rb") as raw:
        assert gzip.decompress(raw.read()) == b""


def test_a_final_line_without_a_newline_is_read(stage):
    stage.fs.makedirs(stage.dir, exist_ok=True)
    with stage.fs.open(stage.path("users.jsonl.gz"), "wb") as raw:
        raw.write(gzip.compress(b'{"n":1}\n\n{"n":2}'))

    assert list(stage.lines("users.jsonl.gz")) == [b'{"n":1}', b"", b'{"n":2}']


def test_a_file_of_several_gzip_members_reads_as_their_lines_in_order(stage):
    stage.fs.makedirs(stage.dir, exist_ok=True)
    with stage.fs.open(stage.path("users.jsonl.gz"), "wb") as raw:
        raw.write(gzip.compress(b'{"n":1}\n{"n":') + gzip.compress(b'2}\n') + gzip.compress(b""))

    assert list(stage.lines("users.jsonl.gz")) == [b'{"n":1}', b'{"n":2}']


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_file_fails_naming_it(stage, damage):
    stage.fs.makedirs(stage.dir, exist_ok=True)
    whole = gzip.compress(b"".join(b'{"n":%d}\n' % n for n in range(5000)))
    half = len(whole) // 2
    damaged = (whole[:half] if damage == "truncated"
               else whole[:20] + bytes(range(256)) * 4 + whole[20 + 1024:])
    with stage.fs.open(stage.path("users.jsonl.gz"), "wb") as raw:
        raw.write(damaged)

    with pytest.raises(StagingError, match=r"staged file \w+://.*/users\.jsonl\.gz is not "
                                           r"whole gzip \(truncated or damaged\)"):
        list(stage.lines("users.jsonl.gz"))


def test_the_compress_level_is_honoured(tmp_path):
    """Levels 1 to 3 are ISA-L's, 0 and 4 to 9 zlib's: each writes gzip that the standard
    library reads."""
    lines = [b'{"user_id":"usr_%05d","plan":"pro"}' % n for n in range(20_000)]
    sizes = {}
    for level in (0, 1, 3, 4, 9):
        stage = Staging(tmp_path.as_uri(), "dag", f"level-{level}", compress_level=level)
        with stage.writer("users.jsonl.gz") as out:
            out.write_lines(lines)
        written = tmp_path / "dag" / f"level-{level}" / "users.jsonl.gz"
        sizes[level] = written.stat().st_size
        assert list(stage.lines("users.jsonl.gz")) == lines
        assert gzip.decompress(written.read_bytes()) == b"\n".join(lines) + b"\n"

    assert sizes[0] > sum(map(len, lines)) > sizes[1] > sizes[9]


class FullDisk(io.BytesIO):
    """A file that takes ``room`` bytes and then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data) -> int:  # noqa: ANN001
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_write_failing_mid_file_fails_naming_the_file_and_publishes_nothing(stage,
                                                                           monkeypatch):
    opened = stage.fs.open
    monkeypatch.setattr(stage.fs, "open", lambda path, mode="rb", **kw: (
        FullDisk(64 * 1024) if "tmp-" in path else opened(path, mode, **kw)))
    lines = [b'{"user_id":"usr_%06d"}' % n for n in range(500_000)]

    with pytest.raises(StagingError) as caught, stage.writer("users.jsonl.gz") as out:
        for line in lines:
            out.write_line(line)

    assert str(caught.value) == (f"cannot write {stage.url('users.jsonl.gz')}: "
                                 "No space left on device")
    assert out.lines < len(lines)  # it failed on the way, not at the end
    assert not stage.exists("users.jsonl.gz")


def test_chunks_are_lists_of_at_most_size_in_order():
    assert list(chunks(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
