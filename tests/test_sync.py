"""The stages end to end without Airflow: extract, transform, load and audit on real HTTP."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.errors import (
    AccountingError,
    RejectThresholdError,
    SegmentError,
    SyncError,
)
from moesif_segment_sync.pipeline import plan, staging, transform
from moesif_segment_sync.pipeline.mapping import trait_mask, trait_names
from moesif_segment_sync.settings import Endpoint, load_settings
from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore, BatchEntry, RunKey
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests import support
from tests.support import RUN_ID, WINDOW

MOESIF_KEY, WRITE_KEY = "mk-pipeline", "wk-pipeline"


@pytest.fixture
def servers():
    dataset = generate(600, seed=3, start=WINDOW.start, end=WINDOW.end)
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        yield dataset, moesif, segment


def make_run(tmp_path, run_id: str = RUN_ID, *, dry_run: bool = False, **settings: object) -> Run:
    """Small batches (several per run) and no waits between attempts."""
    return support.make_run(tmp_path, run_id, params=RunParams(dry_run=dry_run), **{
        "max_batch_bytes": 60_000, "backoff_initial": 0.0, "backoff_max": 0.0,
        "max_attempts": 2, **settings})


def extract_and_transform(run: Run, moesif: MoesifStandIn) -> dict:
    endpoint = Endpoint(moesif.url, MOESIF_KEY)
    summaries = {"extract_users": sync.extract_users(run, endpoint),
                 "extract_companies": sync.extract_companies(run, endpoint)}
    summaries["shards"] = sync.transform(run)
    return summaries


def load_all(run: Run, segment: SegmentStandIn, shards: list[dict]) -> list[dict]:
    return [sync.load(run, Endpoint(segment.url, WRITE_KEY), shard) for shard in shards]


def staged_messages(run: Run, shards: int = 1) -> list[bytes]:
    stage = run.staging()
    return [line for shard in range(shards) for line in stage.lines(staging.messages_file(shard))]


@pytest.mark.parametrize(("rejected", "considered"), [(5, 100), (1, 20), (3, 60), (0, 0)])
def test_a_rejected_share_exactly_at_the_threshold_passes(rejected, considered):
    sync.check_rejected_share(rejected, considered, 0.05)


@pytest.mark.parametrize(("rejected", "considered"), [(6, 100), (51, 1000), (1, 1)])
def test_a_rejected_share_above_the_threshold_fails_the_run(rejected, considered):
    with pytest.raises(RejectThresholdError, match=rf"^{rejected} of {considered} users rejected"):
        sync.check_rejected_share(rejected, considered, 0.05)


# (the first load's params, the second's): Segment has every message after either pair's first
# load, except when it is a dry run; a second load that reused the first's plan would resume its
# batches instead of planning anew.
PLAN_PAIRS = {"force_then_plain": ({"force": True}, {}),
              "plain_then_dry_run": ({}, {"dry_run": True}),
              "dry_run_then_plain": ({"dry_run": True}, {})}


@pytest.mark.parametrize("pair", PLAN_PAIRS)
def test_a_load_plan_is_reused_only_by_a_load_with_the_same_flags(tmp_path, servers, pair):
    _, moesif, segment = servers
    first_params, second_params = PLAN_PAIRS[pair]
    run = make_run(tmp_path)
    shards = extract_and_transform(run, moesif)["shards"]
    built = sum(shard.messages for shard in shards)
    load_all(dataclasses.replace(run, params=RunParams(**first_params)), segment, shards)

    second = load_all(dataclasses.replace(run, params=RunParams(**second_params)), segment,
                      shards)

    totals = {name: sum(getattr(load, name) for load in second)
              for name in ("sent", "would_send", "unchanged", "resumed_batches")}
    expected = {"sent": 0, "would_send": 0, "unchanged": built, "resumed_batches": 0}
    if pair == "dry_run_then_plain":
        expected = {**expected, "sent": built, "unchanged": 0}
    assert totals == expected
    assert len(segment.delivered) == built


def test_the_transform_does_not_depend_on_the_chunk_size(tmp_path, servers):
    dataset, moesif, _ = servers
    big = make_run(tmp_path / "a", chunk_size=50_000)
    small = make_run(tmp_path / "b", chunk_size=7)
    extract_and_transform(big, moesif)
    extract_and_transform(small, moesif)
    assert staged_messages(big) == staged_messages(small)
    assert len(staged_messages(big)) == len(dataset.users) - len(dataset.expected_rejects)


def test_worker_processes_stage_the_same_files_as_one_process(tmp_path, servers):
    dataset, moesif, _ = servers
    alone = make_run(tmp_path / "a", chunk_size=40, transform_workers=1)
    shared = make_run(tmp_path / "b", chunk_size=40, transform_workers=2)
    summaries = [extract_and_transform(run, moesif)["shards"][0] for run in (alone, shared)]
    assert [summary.workers for summary in summaries] == [1, 2]
    assert staged_messages(alone) == staged_messages(shared)
    rejects = [list(run.staging().lines(staging.REJECTS)) for run in (alone, shared)]
    assert rejects[0] == rejects[1] and len(rejects[0]) == len(dataset.expected_rejects)
    drop = {"transform_id", "seconds", "started_at", "workers", "files"}
    assert summaries[0].model_dump(exclude=drop) == summaries[1].model_dump(exclude=drop)


def test_a_task_that_may_not_start_processes_maps_in_its_own(tmp_path, servers, monkeypatch,
                                                             caplog):
    _, moesif, _ = servers

    class DaemonicPool:  # what multiprocessing does inside a daemonic process
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def submit(self, *args: object) -> None:
            raise AssertionError("daemonic processes are not allowed to have children")

        def shutdown(self, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(transform, "ProcessPoolExecutor", DaemonicPool)
    run = make_run(tmp_path, chunk_size=40, transform_workers=2)
    summary = extract_and_transform(run, moesif)["shards"][0]
    assert summary.workers == 1
    assert "cannot start worker processes (daemonic processes" in caplog.text
    assert len(staged_messages(run)) == summary.messages > 0


def test_message_ids_are_stable_across_runs(tmp_path, servers):
    _, moesif, _ = servers
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b", run_id="manual__x")
    extract_and_transform(first, moesif)
    extract_and_transform(second, moesif)
    ids = [[orjson.loads(m)["messageId"] for m in staged_messages(run)] for run in (first, second)]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])


def test_the_transform_stages_each_messages_head_line_for_line(tmp_path, servers):
    _, moesif, _ = servers
    run = make_run(tmp_path, shard_size=250)
    shards = extract_and_transform(run, moesif)["shards"]
    stage = run.staging()

    for shard in range(len(shards)):
        messages = [orjson.loads(line) for line in stage.lines(staging.messages_file(shard))]
        heads = [orjson.loads(line) for line in stage.lines(staging.heads_file(shard))]
        assert heads == [[m["userId"], m["messageId"], trait_mask(m["traits"])]
                         for m in messages]
        assert all(trait_names(head[2]) == list(m["traits"])  # traits go in TRAIT_ORDER
                   for head, m in zip(heads, messages, strict=True))


def test_the_load_skips_unchanged_lines_of_the_staged_messages_without_copying_them(
        tmp_path, servers):
    _, moesif, segment = servers
    run = make_run(tmp_path)
    summaries = extract_and_transform(run, moesif)
    stage = run.staging()
    heads = [tuple(orjson.loads(line)) for line in stage.lines(staging.heads_file(0))]
    store = AuditStore(run.audit_url)
    # Segment already has every third message (lines 1, 4, 7, ...) from an earlier run.
    store.record_batch(RunKey(run.dag_id, "an earlier run"), BatchEntry(0, 1, "sent", 0, 0, 1),
                       accepted=heads[::3])

    loads = load_all(run, segment, summaries["shards"])
    sync.audit(run, summaries["extract_users"], summaries["extract_companies"],
               summaries["shards"], loads)

    expected = [head[1] for number, head in enumerate(heads) if number % 3]
    assert (loads[0].unchanged, loads[0].sent) == (len(heads[::3]), len(expected))
    assert list(segment.delivered) == expected
    assert stage.read_json(staging.plan_file(0))["unchanged_lines"] == [
        [line, line] for line in range(1, len(heads) + 1, 3)]
    assert sorted(path.rsplit("/", 1)[-1] for path in stage.fs.ls(stage.dir, detail=False)
                  if "-00000" in path) == sorted(
        [staging.heads_file(0), staging.plan_file(0), staging.messages_file(0)])
    # The sent-messages download reads the same selection from the staged messages.
    detail = history.run_detail(store, run.key)
    store.close()
    sent = plan.sent_messages(run.staging(), detail.counts["shards"])
    assert [message["messageId"] for message in sent] == expected


def test_a_user_twice_in_the_staged_users_is_sent_once(tmp_path, servers):
    _, moesif, _ = servers
    run = make_run(tmp_path)
    extract_and_transform(run, moesif)
    stage = run.staging()
    users = list(stage.lines(staging.USERS))
    with stage.writer(staging.USERS_VIA_COMPANY) as out:
        out.write_line(users[0])

    [summary] = sync.transform(run)

    assert summary.rejected_by_kind["duplicate"] == 1
    rejects = [orjson.loads(line) for line in stage.lines(staging.REJECTS)]
    [duplicate] = [r for r in rejects if r["kind"] == "duplicate"]
    assert duplicate["reason"] == "an earlier record of this run has the same user_id"
    assert duplicate["record"] == orjson.loads(users[0])["_source"]


def test_a_refused_batch_stops_the_load_and_a_retry_resumes_after_the_last_sent(tmp_path,
                                                                                servers):
    _, moesif, segment = servers
    run = make_run(tmp_path, max_refused_splits=0)  # the refused batch is not split
    [built] = extract_and_transform(run, moesif)["shards"]
    segment.inject(400, after=2, body={"code": "invalid_request", "message": "simulated"})

    with pytest.raises(SegmentError, match="batch 3: simulated"):
        sync.load(run, Endpoint(segment.url, WRITE_KEY), built)

    store = AuditStore(run.audit_url)
    ledger = store.ledger(run.key)
    assert [(n, e.status) for n, e in sorted(ledger.items())] == [
        ((0, 1), "sent"), ((0, 2), "sent"), ((0, 3), "failed")]
    assert "simulated" in ledger[0, 3].error
    delivered_before = len(segment.delivered)

    loaded = sync.load(run, Endpoint(segment.url, WRITE_KEY), built)

    assert loaded.resumed_batches == 2
    assert loaded.sent == built.messages == len(segment.delivered)
    assert segment.duplicates == 0 and delivered_before < len(segment.delivered)
    assert {e.status for e in store.ledger(run.key).values()} == {"sent"}
    store.close()


def test_a_forced_mismatch_fails_the_audit_and_says_so(tmp_path, servers):
    _, moesif, segment = servers
    run = make_run(tmp_path)
    summaries = extract_and_transform(run, moesif)
    loads = load_all(run, segment, summaries["shards"])
    loads[0] = loads[0].model_copy(update={"sent": loads[0].sent - 1})

    with pytest.raises(AccountingError, match=r"\(\+1 unaccounted\)"):
        sync.audit(run, summaries["extract_users"], summaries["extract_companies"],
                   summaries["shards"], loads)

    record = AuditStore(run.audit_url).run(run.key)
    assert record["status"] == "failed" and "does not add up" in record["error"]
    report = run.staging().read_json(staging.AUDIT)
    assert report["status"] == "failed"


def test_a_store_that_is_down_fails_the_load_before_sending(tmp_path, servers):
    _, moesif, segment = servers
    run = make_run(tmp_path)
    [shard] = extract_and_transform(run, moesif)["shards"]
    broken = Run(**{**run.__dict__, "audit_url": "postgresql://u:p@127.0.0.1:1/none"})

    with pytest.raises(SyncError, match="audit store .* is unavailable"):
        sync.load(broken, Endpoint(segment.url, WRITE_KEY), shard)
    assert segment.requests == []


def test_shards_split_the_messages_and_their_loads_add_up(tmp_path, servers):
    dataset, moesif, segment = servers
    run = make_run(tmp_path, shard_size=100)
    summaries = extract_and_transform(run, moesif)
    shards = summaries["shards"]
    built = len(dataset.users) - len(dataset.expected_rejects)
    assert [shard.shard for shard in shards] == list(range(-(-built // 100)))
    assert len(staged_messages(run, len(shards))) == built

    loads = load_all(run, segment, shards)
    report = sync.audit(run, summaries["extract_users"], summaries["extract_companies"],
                        shards, loads)

    assert (report["sent"], report["status"]) == (built, "success")
    assert report["counts"]["shards"] == len(shards) and len(segment.delivered) == built


def test_a_rerun_with_fewer_shards_removes_the_old_ones(tmp_path, servers):
    _, moesif, _ = servers
    run = make_run(tmp_path, shard_size=100)
    extract_and_transform(run, moesif)
    fewer = Run(**{**run.__dict__, "settings": load_settings(shard_size=10_000)})

    assert [shard.shard for shard in sync.transform(fewer)] == [0]
    assert not run.staging().exists(staging.messages_file(1))
