"""Kill -9 the load mid-batch, run it again: nothing lost, nothing sent twice, same counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.store.audit import AuditStore
from moesif_segment_sync.sync import Run
from sandbox.datagen import generate
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests import support
from tests.conftest import REPO
from tests.support import WINDOW, wait_for

MOESIF_KEY, WRITE_KEY = "mk-resume", "wk-resume"
SETTINGS = {"max_batch_bytes": 50_000, "gzip": False}

# The load in a process of its own, so that the test can kill it with SIGKILL.
LOAD_SCRIPT = """
import json, sys
from moesif_segment_sync import sync
from moesif_segment_sync.settings import load_settings
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams, Window
from datetime import datetime
args = json.loads(sys.argv[1])
window = Window(datetime.fromisoformat(args["start"]), datetime.fromisoformat(args["end"]),
                "data_interval")
run = Run("moesif_to_segment", args["run_id"], "scheduled", window, RunParams(),
          load_settings(**args["settings"]), args["staging"], args["audit"])
sync.load(run, Endpoint(args["segment"], args["key"]), args["built"])
"""


def make_run(tmp_path, name: str) -> Run:
    return support.make_run(tmp_path, f"scheduled__{name}", **SETTINGS)


def prepared(run: Run, moesif: MoesifStandIn) -> dict:
    endpoint = Endpoint(moesif.url, MOESIF_KEY)
    sync.extract_users(run, endpoint)
    sync.extract_companies(run, endpoint)
    [shard] = sync.transform(run)
    return shard


@pytest.fixture
def data():
    dataset = generate(800, seed=5, start=WINDOW.start, end=WINDOW.end)
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif:
        yield moesif


def test_a_load_killed_mid_batch_resumes_to_the_same_result(tmp_path, data):
    moesif = data
    with SegmentStandIn(WRITE_KEY).start() as reference:
        uninterrupted_run = make_run(tmp_path / "reference", "ref")
        built = prepared(uninterrupted_run, moesif)
        uninterrupted = sync.load(uninterrupted_run, Endpoint(reference.url, WRITE_KEY), built)
        expected = set(reference.delivered)
    assert uninterrupted.batches >= 5

    run = make_run(tmp_path, "killed")
    built = prepared(run, moesif)
    store = AuditStore(run.audit_url)
    with SegmentStandIn(WRITE_KEY).start() as segment:
        segment.inject(delay=30, after=3)  # batch 4 hangs until the process is killed
        args = {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat(),
                "run_id": run.run_id, "settings": SETTINGS, "staging": run.staging_root,
                "audit": run.audit_url, "segment": segment.url, "key": WRITE_KEY,
                "built": built.model_dump(mode="json")}
        process = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, json.dumps(args)],
                                   cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        segment.wait_for_arrivals(4)  # batch 4 has reached Segment, which holds it 30 s
        wait_for(lambda: len(store.ledger(run.key)) == 3)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert sorted(store.ledger(run.key)) == [(0, 1), (0, 2), (0, 3)]
        assert len(segment.requests) == 3  # batch 4 was never answered
        assert {e.status for e in store.ledger(run.key).values()} == {"sent"}
        segment.clear_faults()

        resumed = sync.load(run, Endpoint(segment.url, WRITE_KEY), built)

        assert set(segment.delivered) == expected
        ledger = store.ledger(run.key)
    store.close()
    assert resumed.resumed_batches == 3
    assert {e.status for e in ledger.values()} == {"sent"} and len(ledger) == resumed.batches
    for name in ("sent", "unchanged", "batches", "planned"):
        assert getattr(resumed, name) == getattr(uninterrupted, name), name
