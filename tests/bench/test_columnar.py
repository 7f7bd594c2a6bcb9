"""The columnar prototype (bench/columnar.py) builds the transform's messages byte for byte.

The prototype reads and joins on DuckDB and maps in Python; it was measured against
``pipeline.transform`` and not adopted (bench/README.md). This keeps the comparison honest:
on generated data with every kind of bad user and a repeated one, both give the same
messages in the same order and the same user rejects.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.columnar import columnar_messages, stage_dataset, staged_output
from bench.config import DAG_ID, WINDOW
from moesif_segment_sync.codec import format_utc
from moesif_segment_sync.pipeline.staging import Staging
from moesif_segment_sync.pipeline.transform import transform
from sandbox.datagen import generate, write_jsonl

pytest.importorskip("duckdb")


def test_the_columnar_prototype_stages_what_the_transform_stages(tmp_path: Path):
    data = generate(1_200, seed=11, start=WINDOW.start, end=WINDOW.end)
    users = [*data.users, data.users[5], data.users[700]]  # two repeats of built users
    write_jsonl(users, tmp_path / "users.jsonl")
    write_jsonl(data.companies, tmp_path / "companies.jsonl")
    stage = Staging((tmp_path / "staging").as_uri(), DAG_ID, "columnar")
    stage_dataset(tmp_path, stage)
    end = format_utc(WINDOW.end)

    built = transform(stage, default_timestamp=end, chunk_size=100, shard_size=500, workers=1)
    messages, kinds = columnar_messages(stage, default_timestamp=end)

    assert (messages, kinds) == staged_output(stage, built.shards)
    assert kinds.count("duplicate") == 2 and "oversize" in kinds and "no_user_id" in kinds
    assert len(messages) == built.messages
    assert orjson.loads(messages[0])["type"] == "identify"
