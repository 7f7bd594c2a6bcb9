"""The Moesif key and the Segment write key never leave the Airflow connections.

The whole DAG runs four times with recognisable fake keys: a good run, a run
with a wrong Moesif key, a run with a wrong write key, and a run where Segment
refuses a batch. The stand-ins' error answers quote the key they were sent,
as a careless server might. Then every place a key could end up is searched,
for the key itself and for its Basic-auth form: every staged file (unzipped),
the audit database, Airflow's metadata database and log folder, and all
that was printed. ``dag.test()`` runs tasks in-process, so the task logs are
what it prints; ``AIRFLOW_HOME/logs`` is searched too, for whatever is there.

Airflow masks connection passwords in what it logs, which would hide a leak
from the printed output; a second test runs the stages without Airflow and
searches the package's own log records and exceptions.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import sqlite3
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync import sync
from moesif_segment_sync.errors import MoesifError, SegmentError
from moesif_segment_sync.settings import Endpoint
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.conftest import REPO
from tests.reliability.support import extract, make_run, users_in_window

MOESIF_SECRET = "mk-SECRET-7f3a9c1e55d2"
WRITE_SECRET = "wk-SECRET-b52d04aa91c7"
WRONG_MOESIF_SECRET = "mk-WRONG-SECRET-0c4e61"
WRONG_WRITE_SECRET = "wk-WRONG-SECRET-8d1f27"
SECRETS = (MOESIF_SECRET, WRITE_SECRET, WRONG_MOESIF_SECRET, WRONG_WRITE_SECRET)


def needles() -> dict[bytes, str]:
    """Each secret as it could be written: as is, and as an HTTP Basic credential."""
    found = {}
    for secret in SECRETS:
        found[secret.encode()] = secret
        found[base64.b64encode(f"{secret}:".encode())] = f"{secret} (Basic auth)"
    return found


def leaks_in(data: bytes) -> list[str]:
    return sorted(name for needle, name in needles().items() if needle in data)


def readable(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def sqlite_dump(path: Path) -> bytes:
    """The database as SQL text, and its files' raw bytes (free pages and the WAL included)."""
    with sqlite3.connect(path) as db:
        text = "\n".join(db.iterdump()).encode("utf-8", "surrogatepass")
    raw = b"".join(Path(f"{path}{suffix}").read_bytes() for suffix in ("", "-wal", "-journal")
                   if Path(f"{path}{suffix}").exists())
    return text + raw


def window_end(hour: int) -> datetime:
    return datetime(2026, 11, 25, hour, tzinfo=UTC)


def set_connections(monkeypatch, moesif: MoesifStandIn, segment: SegmentStandIn, *,  # noqa: ANN001
                    moesif_key: str = MOESIF_SECRET, write_key: str = WRITE_SECRET) -> None:
    env = connection_env(moesif.url, segment.url, moesif_key=moesif_key, write_key=write_key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def states(dag_run) -> dict[str, str]:  # noqa: ANN001
    found: dict[str, str] = {}
    for ti in dag_run.get_task_instances():
        found[ti.task_id] = str(ti.state) if ti.task_id not in found else found[ti.task_id]
    return found


@pytest.mark.airflow
def test_no_secret_reaches_staged_files_the_audit_store_logs_or_output(airflow_db, tmp_path,
                                                                       monkeypatch, capfd):
    dataset = generate(150, seed=17, start=DATA_SPAN[0], end=DATA_SPAN[1])
    audit_db = tmp_path / "audit.db"
    for name, value in connection_env(audit_url=f"sqlite:///{audit_db}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MOESIF_SEGMENT_STAGING_ROOT", (tmp_path / "staging").as_uri())
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["moesif_to_segment"]
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_SECRET).start() as moesif, \
            SegmentStandIn(WRITE_SECRET).start() as segment:
        set_connections(monkeypatch, moesif, segment)
        good = dag.test(logical_date=window_end(1))

        set_connections(monkeypatch, moesif, segment, moesif_key=WRONG_MOESIF_SECRET)
        moesif.inject(401, times=2, body={"message": f"invalid key {WRONG_MOESIF_SECRET}"})
        wrong_moesif_key = dag.test(logical_date=window_end(2))

        set_connections(monkeypatch, moesif, segment, write_key=WRONG_WRITE_SECRET)
        segment.inject(401, body={"code": "unauthorized",
                                  "message": f"unknown write key {WRONG_WRITE_SECRET}"})
        wrong_write_key = dag.test(logical_date=window_end(0), run_conf={"force": True})

        set_connections(monkeypatch, moesif, segment)
        monkeypatch.setenv("MOESIF_SEGMENT_MAX_REFUSED_SPLITS", "0")  # a 400 fails the load
        segment.inject(400, body={"code": "invalid_request",
                                  "message": f"batch refused for source {WRITE_SECRET}"})
        refused = dag.test(logical_date=window_end(1), run_conf={"force": True})
    output = capfd.readouterr()

    assert str(good.state) == "success", states(good)
    assert states(wrong_moesif_key)["extract_users"] == "failed"
    assert states(wrong_write_key)["load"] == "failed"
    assert states(refused)["load"] == "failed"
    printed = (output.out + output.err).encode("utf-8", "surrogatepass")
    assert b"Segment answered 400 to batch 1: batch refused for source ***" in printed
    places = {path: readable(path) for path in (tmp_path / "staging").rglob("*")
              if path.is_file()}
    assert any(path.name == "audit.json" for path in places)
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    places.update({path: path.read_bytes() for path in (airflow_home / "logs").rglob("*")
                   if path.is_file()})
    places[audit_db] = sqlite_dump(audit_db)
    places[airflow_home / "airflow.db"] = sqlite_dump(airflow_home / "airflow.db")
    places[Path("captured stdout and stderr")] = printed

    leaks = {str(place): leaks_in(data) for place, data in places.items() if leaks_in(data)}

    assert leaks == {}


def test_the_stages_never_log_or_raise_a_secret_even_without_airflows_masking(tmp_path,
                                                                               fake_time,
                                                                               caplog):
    """Every error answer quotes the key it was sent: a retried 503 then a 401 from Moesif,
    a 401 from Segment for a wrong key, a retried 500 then a 400 from Segment."""
    with MoesifStandIn(users_in_window(30), [], api_key=MOESIF_SECRET).start() as moesif, \
            SegmentStandIn(WRITE_SECRET).start() as segment, caplog.at_level(logging.DEBUG):
        moesif.inject(503, body={"message": f"overloaded for {MOESIF_SECRET}"})
        moesif.inject(401, after=1, body={"message": f"bad key {MOESIF_SECRET}"})
        with pytest.raises(MoesifError) as moesif_refused:
            extract(make_run(tmp_path / "refused"), moesif.url, MOESIF_SECRET)
        run = make_run(tmp_path / "extracted")
        extract(run, moesif.url, MOESIF_SECRET)
        [shard] = sync.transform(run)
        segment.inject(401, body={"message": f"unknown write key {WRONG_WRITE_SECRET}"})
        with pytest.raises(SegmentError) as wrong_key:
            sync.load(run, Endpoint(segment.url, WRONG_WRITE_SECRET), shard)
        segment.inject(500, body={"message": f"flaky for {WRITE_SECRET}"})
        segment.inject(400, after=1, body={"message": f"refused for {WRITE_SECRET}"})
        with pytest.raises(SegmentError) as segment_refused:
            sync.load(run, Endpoint(segment.url, WRITE_SECRET), shard)
    raised = "".join(line for caught in (moesif_refused, wrong_key, segment_refused)
                     for line in traceback.format_exception(caught.value))
    logged = "\n".join(f"{record.getMessage()} {record.exc_text or ''}"
                       for record in caplog.records)

    assert [caught.value.status for caught in (moesif_refused, wrong_key, segment_refused)] == [
        401, 401, 400]
    assert "refused for ***" in str(segment_refused.value)
    assert leaks_in(raised.encode()) == []
    assert leaks_in(logged.encode()) == []
    assert leaks_in(f"{run!r} {Endpoint(moesif.url, MOESIF_SECRET)!r}".encode()) == []
