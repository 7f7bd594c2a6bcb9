"""The stand-ins as processes: one READY line with the URL, then a clean exit on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from sandbox.datagen import write_jsonl

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python -m <args>``, wait for its READY line, and terminate it afterwards."""
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line + process.stderr.read()
        yield process, line.split()[1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_moesif_cli_serves_the_files_and_exits_cleanly_on_sigterm(tmp_path):
    write_jsonl([{"user_id": "usr_1"}, {"user_id": "usr_2"}], tmp_path / "users.jsonl")
    write_jsonl([{"company_id": "cmp_1"}], tmp_path / "companies.jsonl")

    with running("sandbox.moesif", "--users", str(tmp_path / "users.jsonl"), "--companies",
                 str(tmp_path / "companies.jsonl"), "--key", "k", "--max-page-size", "5") as (
                     process, url):
        response = requests.post(f"{url}/v1/search/~/search/users", json={"size": 5},
                                 headers={"Authorization": "Bearer k"}, timeout=5)
        too_big = requests.post(f"{url}/v1/search/~/search/users", json={"size": 6},
                                headers={"Authorization": "Bearer k"}, timeout=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""  # nothing after the READY line

    assert response.json()["hits"]["total"] == 2
    assert too_big.status_code == 400


def test_segment_cli_accepts_a_batch_and_exits_cleanly_on_sigint():
    with running("sandbox.segment", "--write-key", "wk") as (process, url):
        response = requests.post(f"{url}/v1/batch", auth=("wk", ""), timeout=5,
                                 json={"batch": [{"type": "identify", "userId": "u"}]})
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0

    assert response.status_code == 200
    assert stats["delivered"] == 1
