"""Per-message refusals (issue 20): a batch Segment refuses as invalid is split until the
refused messages are found; they become rejects with Segment's answer, the others arrive,
the counts add up, and the extra requests stay within log2 of the batch size per refusal."""

from __future__ import annotations

import math

import orjson
import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.errors import SyncError
from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests import support
from tests.support import WINDOW

MOESIF_KEY, WRITE_KEY = "mk-refused", "wk-refused"


@pytest.fixture
def world(tmp_path):
    dataset = generate(600, seed=5, start=WINDOW.start, end=WINDOW.end)
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        yield moesif, segment


def prepared(tmp_path, moesif, **settings):  # noqa: ANN001, ANN201
    run = support.make_run(tmp_path, "scheduled__refused", gzip=False, **settings)
    endpoint = Endpoint(moesif.url, MOESIF_KEY)
    users = sync.extract_users(run, endpoint)
    companies = sync.extract_companies(run, endpoint)
    [shard] = sync.transform(run)
    return run, users, companies, shard


def staged_user_ids(run) -> list[str]:  # noqa: ANN001
    """The userId of each staged message, in order."""
    return [orjson.loads(line)[0] for line in run.staging().lines(staging.heads_file(0))]


def test_a_refused_message_becomes_a_reject_and_the_others_arrive(tmp_path, world):
    moesif, segment = world
    run, users, companies, shard = prepared(tmp_path, moesif)
    ids = staged_user_ids(run)
    bad = [ids[7], ids[len(ids) // 2]]
    segment.refused_users.update({user_id: "Invalid JSON at traits" for user_id in bad})

    loaded = sync.load(run, Endpoint(segment.url, WRITE_KEY), shard)
    report = sync.audit(run, users, companies, [shard], [loaded])

    assert sorted(m["userId"] for m in segment.delivered.values()) == sorted(
        set(ids) - set(bad))
    assert (loaded.refused, loaded.sent) == (2, len(ids) - 2)
    assert report["status"] == "success"
    assert report["rejected"] == shard.rejected + 2
    assert report["considered"] == report["sent"] + report["unchanged"] + report["rejected"]
    assert report["counts"]["rejected_by_kind"]["segment_refused"] == 2
    assert report["notes"] == ["Segment refused 2 message(s) one by one; the others of their "
                               "batches were delivered; they are rejects of kind segment_refused"]
    store = AuditStore(run.audit_url)
    rejects = [r for r in history.list_rejects(store, run.key, limit=10_000).rejects
               if r.kind == "segment_refused"]
    ledger = store.ledger(run.key)
    store.close()
    assert sorted((r.entity_id, r.reason) for r in rejects) == sorted(
        (user_id, "Segment refused the message: Invalid JSON at traits") for user_id in bad)
    assert all(f'"userId":"{r.entity_id}"' in r.raw_record for r in rejects)
    # Two batches each held one refused message: each took at most log2(its size) + 2
    # requests beyond its own.
    split = [entry for entry in ledger.values() if entry.error]
    assert len(split) == 2
    for entry in split:
        assert entry.status == "sent"
        assert entry.attempts <= 3 + math.ceil(math.log2(entry.messages + 1))


def test_a_second_run_sends_nothing_again_but_the_refused_ones(tmp_path, world):
    moesif, segment = world
    run, users, companies, shard = prepared(tmp_path, moesif)
    bad = staged_user_ids(run)[3]
    segment.refused_users[bad] = "Invalid"
    first = sync.load(run, Endpoint(segment.url, WRITE_KEY), shard)
    segment.clear_log()
    del segment.refused_users[bad]  # the cause is fixed

    again = support.make_run(tmp_path, "scheduled__refused_again", gzip=False)
    again_users = sync.extract_users(again, Endpoint(moesif.url, MOESIF_KEY))
    sync.extract_companies(again, Endpoint(moesif.url, MOESIF_KEY))
    [again_shard] = sync.transform(again)
    second = sync.load(again, Endpoint(segment.url, WRITE_KEY), again_shard)

    assert first.refused == 1 and again_users.users_in_window > 0
    # Only the refused user was not in the state as accepted: it alone is sent again.
    assert (second.sent, second.refused) == (1, 0)
    assert bad in {m["userId"] for m in segment.delivered.values()}


def test_past_the_cap_the_load_fails_as_before(tmp_path, world):
    moesif, segment = world
    run, _, _, shard = prepared(tmp_path, moesif, max_refused_splits=2)
    ids = staged_user_ids(run)
    segment.refused_users[ids[100]] = "Invalid"

    with pytest.raises(SyncError, match="MOESIF_SEGMENT_MAX_REFUSED_SPLITS \\(2\\)"):
        sync.load(run, Endpoint(segment.url, WRITE_KEY), shard)
    store = AuditStore(run.audit_url)
    failed = [entry for entry in store.ledger(run.key).values() if entry.status == "failed"]
    store.close()
    assert len(failed) == 1


def test_a_refusal_that_is_not_about_a_message_delivers_everything(tmp_path, world):
    """Segment refuses the batch once, then takes every part: nothing becomes a reject."""
    moesif, segment = world
    run, _, _, shard = prepared(tmp_path, moesif)
    segment.inject(400, after=1, body={"code": "invalid_request", "message": "once"})

    loaded = sync.load(run, Endpoint(segment.url, WRITE_KEY), shard)

    assert (loaded.refused, loaded.sent) == (0, len(staged_user_ids(run)))
