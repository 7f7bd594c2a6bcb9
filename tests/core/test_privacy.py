"""Personal data: named fields hashed before staging, traits limited by allow and deny lists."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime

import orjson

from moesif_segment_sync import staging, sync
from moesif_segment_sync.settings import load_settings
from moesif_segment_sync.sync import Endpoint, Run
from moesif_segment_sync.window import RunParams, Window
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn

WINDOW = Window(datetime(2026, 11, 25, 0, tzinfo=UTC), datetime(2026, 11, 25, 1, tzinfo=UTC),
                "data_interval")
USER = {"user_id": "u1", "email": " Ada@Example.com ", "name": "Ada",
        "metadata": {"email": "ada@meta.example", "plan": "pro"},
        "modified_time": "2026-11-25T00:10:00Z", "campaign": {"utm_source": "google"}}


def run_sync(tmp_path, **settings: object) -> tuple[dict, Run]:
    run = Run("moesif_to_segment", "manual__1", "manual", WINDOW, RunParams(),
              load_settings(**settings), tmp_path.as_uri(), f"sqlite:///{tmp_path / 'a.db'}")
    with MoesifStandIn([USER], [], api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment:
        sync.extract_users(run, Endpoint(moesif.url, "mk"))
        sync.extract_companies(run, Endpoint(moesif.url, "mk"))
        for shard in sync.transform(run):
            sync.load(run, Endpoint(segment.url, "wk"), shard)
        [message] = segment.delivered.values()
    return message, run


def test_hashed_fields_never_reach_staged_files_or_segment(tmp_path):
    message, run = run_sync(tmp_path, hash_fields=["email"])

    digest = hashlib.sha256(b"Ada@Example.com").hexdigest()
    assert message["traits"]["email"] == digest
    assert message["traits"]["metadata"]["email"] == hashlib.sha256(
        b"ada@meta.example").hexdigest()
    for path in (tmp_path / "moesif_to_segment" / "manual__1").glob("*.gz"):
        text = gzip.decompress(path.read_bytes())
        assert b"Ada@Example.com" not in text and b"ada@meta.example" not in text, path.name
    raw = orjson.loads(next(run.staging().lines(staging.USERS)))
    assert raw["_source"]["email"] == digest


def test_deny_drops_traits_and_allow_keeps_only_those(tmp_path):
    denied, _ = run_sync(tmp_path / "deny", trait_deny=["email", "metadata"])
    allowed, _ = run_sync(tmp_path / "allow", trait_allow=["name"])

    assert set(denied["traits"]) == {"id", "modifiedTime", "name", "campaign"}
    assert allowed["traits"] == {"id": "u1", "name": "Ada"}


def test_without_settings_everything_is_sent_in_clear(tmp_path):
    message, _ = run_sync(tmp_path)
    assert message["traits"]["email"] == "Ada@Example.com"
