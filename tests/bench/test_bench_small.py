"""The benchmark's machinery at N=5,000: correctness only, no timing assertions.

Runs ``python -m bench.run`` as ``make bench`` does, with one round instead
of three and every user in the identity sample, then checks what a figure
is worth nothing without: every message delivered with no drop, every key
of issue 7 in results.json, the message identity check passed, and that
check really catching a one-byte change in a staged message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import staged
from bench.checks import check_identity, check_identity_store
from bench.config import DAG_ID
from moesif_segment_sync.pipeline.staging import Staging
from sandbox import moesif_store
from tests.conftest import REPO

pytestmark = pytest.mark.airflow

N_USERS = 5000
TOP_LEVEL_KEYS = {"n_users", "extract_users_per_s", "transform_users_per_s", "load_events_per_s",
                  "end_to_end_s", "peak_rss_mb", "peer", "ratio_vs_peer_default",
                  "ratio_vs_peer_tuned", "dropped", "machine"}
STAGES = {"extract_users", "extract_companies", "transform", "transform_workers", "load"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[dict, Path]:
    """One benchmark run shared by the tests: its results and its kept work folder."""
    root = tmp_path_factory.mktemp("bench")
    out, work = root / "results.json", root / "work"
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--users", str(N_USERS), "--rounds", "1",
         "--sample", str(N_USERS), "--out", str(out), "--work", str(work), "--keep"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return json.loads(out.read_text()), work


def test_every_message_is_delivered_without_drops(bench):
    results, _ = bench
    messages = results["messages"]
    assert results["dropped"] == 0
    assert results["delivery_check"]["passed"]
    assert results["delivery_check"]["checked"] == messages
    for run in results["load_runs"]:
        assert (run["sent"], run["delivered"], run["dropped"], run["duplicates"]) == (
            messages, messages, 0, 0)
    end_to_end = results["end_to_end"]
    assert (end_to_end["sent"], end_to_end["delivered"], end_to_end["dropped"]) == (
        messages, messages, 0)
    assert results["peer"]["tuned"]["delivered"] == messages


def test_results_json_has_every_key_of_the_issue(bench):
    results, _ = bench
    assert TOP_LEVEL_KEYS <= results.keys()
    assert results["n_users"] == N_USERS
    assert set(results["peak_rss_mb"]) == STAGES
    # Issue 21: users per CPU second of each stage and the CPU a million users cost.
    assert {f"{stage}_per_cpu_s" for stage in STAGES} <= results["per_core"].keys()
    assert results["per_core"]["cpu_seconds_per_million_users"] > 0
    assert results["state_store_mb"] > 0
    assert set(results["peer"]) == {"default", "tuned"}
    for figures in results["peer"].values():
        assert {"events_per_s", "delivered", "dropped"} <= figures.keys()
    assert {"cores", "python", "versions"} <= results["machine"].keys()
    assert results["machine"]["versions"]["segment-analytics-python"]
    assert all(isinstance(results[key], int | float) and results[key] > 0 for key in (
        "extract_users_per_s", "transform_users_per_s", "transform_workers_users_per_s",
        "load_events_per_s", "end_to_end_s"))


def test_the_message_identity_check_passed_on_every_user(bench):
    check = bench[0]["identity_check"]
    assert check["passed"]
    assert check["sampled"] == N_USERS
    assert check["identical"] == bench[0]["messages"]
    assert check["n_mismatched"] == 0


@pytest.fixture(scope="module")
def tampered(bench) -> Staging:
    """The benchmark's staged messages with one byte of the eighth changed."""
    _, work = bench
    root = (work / "staging").as_uri()
    source, tampered = Staging(root, DAG_ID, "bench"), Staging(root, DAG_ID, "tampered")
    staged.write_messages(tampered, (
        line.replace(b'"active":false', b'"active":true', 1) if number == 7 else line
        for number, line in enumerate(staged.messages(source))))
    return tampered


def test_the_identity_check_catches_one_changed_byte(bench, tampered):
    _, work = bench
    check = check_identity(work / "data" / "users.jsonl", work / "data" / "companies.jsonl",
                           tampered, n_users=N_USERS, sample=N_USERS)

    assert not check["passed"]
    assert check["n_mismatched"] == 1


@pytest.fixture(scope="module")
def store(bench, tmp_path_factory) -> Path:
    """The benchmark's users and companies as a stand-in store, built as its CLI builds one."""
    _, work = bench
    path = tmp_path_factory.mktemp("store") / "store.sqlite"
    moesif_store.main(["--users", str(work / "data" / "users.jsonl"),
                       "--companies", str(work / "data" / "companies.jsonl"), "--out", str(path)])
    return path


@pytest.mark.parametrize(("sample", "sampled"), [(N_USERS, N_USERS), (37, 38)])
def test_the_identity_check_reads_a_store_as_it_reads_the_files(bench, tampered, store,
                                                                sample, sampled):
    """A ten-million-user account is a store (``--store``): the check reads only its
    companies and its sampled users, and must sample and judge exactly as from the files."""
    _, work = bench
    users, companies = work / "data" / "users.jsonl", work / "data" / "companies.jsonl"
    source = Staging((work / "staging").as_uri(), DAG_ID, "bench")

    checks = {name: (check_identity(users, companies, stage, n_users=N_USERS, sample=sample),
                     check_identity_store(store, stage, n_users=N_USERS, sample=sample))
              for name, stage in (("source", source), ("tampered", tampered))}

    for from_files, from_store in checks.values():
        assert from_store == from_files
        assert from_store["sampled"] == sampled
    assert checks["source"][1]["passed"]
    if sample == N_USERS:
        assert checks["tampered"][1]["n_mismatched"] == 1
