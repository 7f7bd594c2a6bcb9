"""Shared staging is an fsspec URL: the stages run the same on file:// and memory://.

Workers of the Celery topology share staging through a volume (file://) or object storage
(s3://, gs://). The in-memory fsspec filesystem stands in for object storage here: a whole
run — extract, transform, a load per shard, audit, and the history plugin's download — that
keeps every staged file in memory proves no code path assumes a local disk.
"""

from __future__ import annotations

import gzip
import uuid

import fsspec
import orjson
import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.pipeline import Staging, plan, staging
from moesif_segment_sync.settings import Endpoint, load_settings
from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.support import RUN_ID, WINDOW

MOESIF_KEY, WRITE_KEY = "mk-staging", "wk-staging"
SHARD_SIZE = 90  # 400 users: five shards, so the loads and the audit cross shard files


@pytest.fixture(scope="module")
def dataset():
    return generate(400, seed=11, start=WINDOW.start, end=WINDOW.end)


@pytest.fixture
def servers(dataset):
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        yield moesif, segment


@pytest.fixture
def memory_root():
    root = f"memory://mss-{uuid.uuid4().hex}"
    yield root
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def run_all(root: str, audit_url: str, moesif: MoesifStandIn, segment: SegmentStandIn) -> Run:
    """One run through every stage, as the DAG's tasks call them (one load per shard)."""
    run = Run("moesif_to_segment", RUN_ID, "scheduled", WINDOW, RunParams(),
              load_settings(shard_size=SHARD_SIZE, max_batch_bytes=60_000, backoff_initial=0.0,
                            backoff_max=0.0, max_attempts=2),
              root, audit_url)
    users = sync.extract_users(run, Endpoint(moesif.url, MOESIF_KEY))
    companies = sync.extract_companies(run, Endpoint(moesif.url, MOESIF_KEY))
    shards = sync.transform(run)
    loads = [sync.load(run, Endpoint(segment.url, WRITE_KEY), shard) for shard in shards]
    report = sync.audit(run, users, companies, shards, loads)
    assert report["status"] == "success"
    return run


def expected_user_ids(dataset) -> list[str]:
    return sorted(user["user_id"] for index, user in enumerate(dataset.users)
                  if index not in dataset.expected_rejects)


def staged_files(run: Run) -> dict[str, bytes]:
    stage = run.staging()
    return {path.rsplit("/", 1)[-1]: stage.fs.cat_file(path) for path in stage.fs.ls(stage.dir,
                                                                                     detail=False)}


def test_a_whole_run_stages_in_memory_and_nothing_on_disk(tmp_path, dataset, servers,
                                                          memory_root):
    moesif, segment = servers
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"

    run = run_all(memory_root, audit_url, moesif, segment)

    # Segment got exactly the good users, once each.
    assert sorted(m["userId"] for m in segment.delivered.values()) == expected_user_ids(dataset)
    assert segment.duplicates == 0
    # Every staged file is in the memory filesystem, complete (no temporary names left) ...
    files = staged_files(run)
    shards = -(-len(expected_user_ids(dataset)) // SHARD_SIZE)
    assert shards >= 4
    assert set(files) == {
        staging.USERS, staging.USERS_VIA_COMPANY, staging.COMPANIES, staging.USER_COMPANIES,
        staging.REJECTS, staging.AUDIT,
        *(name(shard) for shard in range(shards)
          for name in (staging.messages_file, staging.heads_file, staging.plan_file))}
    # ... and the only thing on the local disk is the SQLite audit store.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["audit.db"]
    # The audit points at memory:// for the run's folder and every reject's raw record.
    fs, root_path = fsspec.core.url_to_fs(memory_root)
    canonical = fs.unstrip_protocol(root_path)  # memory://x is memory:///x to fsspec
    store = AuditStore(audit_url)
    try:
        record = store.run(run.key)
        assert record["staging"] == f"{canonical}/moesif_to_segment/{RUN_ID}"
        rejects = history.list_rejects(store, run.key, limit=1000).rejects
        assert len(rejects) == len(dataset.expected_rejects)
        assert all(r.raw_location.startswith(f"{canonical}/") for r in rejects)
        # The plugin's "sent messages" download reads the shards back from memory.
        detail = history.run_detail(store, run.key)
    finally:
        store.close()
    stage = Staging(memory_root, detail.dag_id, detail.run_id)
    sent = sorted(message["userId"]
                  for message in plan.sent_messages(stage, detail.counts["shards"]))
    assert sent == expected_user_ids(dataset)
    assert orjson.loads(files[staging.AUDIT])["staging"] == record["staging"]


def test_file_and_memory_staging_hold_the_same_bytes(tmp_path, dataset, memory_root):
    """The same run on a local folder and in memory: identical staged files, byte for byte."""
    runs = {}
    for kind, root in (("file", (tmp_path / "staging").as_uri()), ("memory", memory_root)):
        with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as m, \
                SegmentStandIn(WRITE_KEY).start() as s:
            runs[kind] = run_all(root, f"sqlite:///{tmp_path / f'audit-{kind}.db'}", m, s)
    on_disk, in_memory = staged_files(runs["file"]), staged_files(runs["memory"])
    assert (tmp_path / "staging" / "moesif_to_segment" / RUN_ID / staging.USERS).is_file()
    assert on_disk.keys() == in_memory.keys()
    assert comparable(on_disk) == comparable(in_memory)


def comparable(files: dict[str, bytes]) -> dict[str, object]:
    """Staged files without what differs between any two runs: the gzip header (it names the
    temporary file), each transform's random id, and audit.json (URLs, store, times)."""
    out: dict[str, object] = {}
    for name, data in files.items():
        if name.endswith(".gz"):
            out[name] = gzip.decompress(data)
        elif name.startswith("load_plan-"):
            out[name] = {k: v for k, v in orjson.loads(data).items() if k != "transform_id"}
    return out
