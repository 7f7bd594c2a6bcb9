"""Airflow-native data flow through the real scheduler (issue 19): a downstream DAG scheduled
on the sync's Segment Asset runs after a sync and reads the run's counts from the Asset
event, the run's StatsD metrics reach a UDP listener and match the audit's counts, and with
MOESIF_SEGMENT_GROUP_CALLS on Segment gets one group call per user-company link."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections import Counter

import pytest

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, connection_env, stand_ins
from tests.airflow_server import standalone
from tests.conftest import REPO
from tests.dags.test_group_calls import expected_group
from tests.support import DAG_ID

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]

DOWNSTREAM = '''
from airflow.sdk import Asset, dag, task

PROFILES = Asset(name="segment_profiles", uri="segment://segment_default/identify",
                 group="moesif_segment_sync")


@dag(schedule=[PROFILES], catchup=False, tags=["test"])
def after_segment_sync():
    @task
    def read_counts(triggering_asset_events=None):
        # Events that arrive before the scheduler creates a run share that run.
        return [dict(event.extra) for event in triggering_asset_events[PROFILES]]

    read_counts()


after_segment_sync()
'''


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it is sent."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65535)
            except TimeoutError:
                continue
            self.lines += data.decode().splitlines()

    def counters(self, prefix: str) -> Counter:
        totals: Counter = Counter()
        for line in list(self.lines):
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if name.startswith(prefix) and kind.startswith("c"):
                totals[name[len(prefix):]] += int(float(value))
        return totals

    def timers(self, prefix: str) -> set[str]:
        return {line.partition(":")[0][len(prefix):] for line in list(self.lines)
                if line.startswith(prefix) and line.endswith("|ms")}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def world(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "moesif_to_segment.py", dags)
    (dags / "after_segment_sync.py").write_text(DOWNSTREAM)
    statsd = StatsdListener()
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    try:
        with stand_ins(dataset) as (moesif, segment), \
                standalone(tmp_path / "airflow", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                           AIRFLOW__METRICS__STATSD_ON="True",
                           AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
                           AIRFLOW__METRICS__STATSD_PORT=str(statsd.port),
                           MOESIF_SEGMENT_GROUP_CALLS="true",
                           **connection_env(moesif.url, segment.url)) as server:
            server.wait(lambda: server._get("/api/v2/dags/after_segment_sync").status_code
                        == 200, 120, "the downstream DAG to be parsed")
            yield server, segment, statsd
    finally:
        statsd.close()


def runs_of(server, dag_id: str) -> list[dict]:  # noqa: ANN001
    return server.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]


def test_a_sync_schedules_the_downstream_dag_and_reports_its_metrics(world):
    server, segment, statsd = world
    for dag_id in (DAG_ID, "after_segment_sync"):
        server.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    # Unpaused, the scheduler also syncs the latest hour (empty): that run is in the figures.
    conf = {"start": DEMO_WINDOW[0].isoformat(), "end": DEMO_WINDOW[1].isoformat()}
    body = {"dag_run_id": "manual__assets", "logical_date": None, "conf": conf}
    for _ in range(30):
        response = server.session.post(f"{server.base}/api/v2/dags/{DAG_ID}/dagRuns", json=body,
                                       timeout=30)
        if response.status_code != 503:
            break
        time.sleep(1)
    assert response.ok, response.text

    def synced() -> bool:
        ours = [run for run in runs_of(server, DAG_ID) if run["dag_run_id"] == "manual__assets"]
        return bool(ours) and ours[0]["state"] in ("success", "failed")

    server.wait(synced, 300, "the sync run")

    def extras() -> list[dict]:
        found = []
        for run in runs_of(server, "after_segment_sync"):
            if run["state"] != "success":
                continue
            found += server.api("GET", f"/api/v2/dags/after_segment_sync/dagRuns/"
                                       f"{run['dag_run_id']}/taskInstances/read_counts/"
                                       "xcomEntries/return_value")["value"]
        return found

    server.wait(lambda: any(extra["run_id"] == "manual__assets" for extra in extras()), 300,
                "the downstream run that reads our sync's counts")
    server.wait(lambda: all(run["state"] in ("success", "failed")
                            for run in runs_of(server, DAG_ID)), 300, "every sync run")

    store = AuditStore(f"sqlite:///{server.home / 'moesif_segment_audit.db'}")
    records = {record["run_id"]: record for record in store.latest_runs(DAG_ID, limit=10)}
    store.close()
    ours = records["manual__assets"]
    delivered = list(segment.delivered.values())
    identifies = [message for message in delivered if message["type"] == "identify"]
    assert ours["status"] == "success" and ours["sent"] == len(identifies) > 0

    # One group call per user-company link, as trait-mapping.md maps it.
    linked = [message for message in identifies if "company" in message["traits"]]
    calls = sorted(({k: v for k, v in message.items() if k != "messageId"}
                    for message in delivered if message["type"] == "group"),
                   key=lambda call: call["userId"])
    assert calls == sorted(map(expected_group, linked), key=lambda call: call["userId"])
    groups = {"built": len(linked), "sent": len(linked), "would_send": 0, "unchanged": 0,
              "refused": 0}
    assert ours["counts"]["groups"] == groups

    # The downstream run that our sync triggered read our run's counts from the Asset event.
    mine = [extra for extra in extras() if extra["run_id"] == "manual__assets"]
    assert mine == [{"considered": ours["considered"], "sent": ours["sent"], "would_send": 0,
                     "unchanged": ours["unchanged"], "rejected": ours["rejected"],
                     "batches": ours["batches"], "status": "success",
                     "run_id": "manual__assets", "dry_run": False,
                     "window_start": "2026-11-25T00:00:00.000Z",
                     "window_end": "2026-11-25T01:00:00.000Z", "group_calls": groups}]

    # StatsD: the counters of every run, summed, are the audit's.
    deadline = time.monotonic() + 30
    prefix = "airflow.moesif_segment."
    expected = {"users.considered": sum(r["considered"] for r in records.values()),
                "messages.sent": sum(r["sent"] for r in records.values()),
                "messages.rejected": sum(r["rejected"] for r in records.values()),
                "groups.sent": len(linked),
                "batches": sum(r["batches"] for r in records.values())}
    while True:
        counters = statsd.counters(prefix)
        if all(counters[name] == value for name, value in expected.items()) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {name: counters[name] for name in expected} == expected
    assert counters["runs.success"] == len(records)
    assert {"segment.send_latency", "load.duration", "transform.duration"} <= statsd.timers(
        prefix)
