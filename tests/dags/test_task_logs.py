"""What a person reads in the task logs of a run (`airflow dags test`, as `make demo` runs it):
no warning that our code causes, and progress lines from each long stage."""

from __future__ import annotations

import re

from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN
from tests.dags.support import dags_test

# Airflow's own start-up warnings in `dags test`, not caused by us: the graph renderer it
# cannot find, and the in-process execution API's test client.
AIRFLOWS_OWN = ("Could not import graphviz", "Using `httpx` with `starlette.testclient`")


def test_a_run_logs_progress_and_no_warning_of_ours(airflow_db, tmp_path):
    dataset = generate(1500, seed=5, start=DATA_SPAN[0], end=DATA_SPAN[1])
    result = dags_test(dataset, tmp_path / "home", MOESIF_SEGMENT_PROGRESS_SECONDS="0",
                       MOESIF_SEGMENT_PAGE_SIZE="100")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]

    warnings = [line for line in log.splitlines()
                if re.search(r"\[warning\s*\]|Warning\b", line)
                and not any(known in line for known in AIRFLOWS_OWN)
                and not line.startswith("Run `pip install graphviz`")]
    assert warnings == []

    assert re.search(r"Moesif users \(changed in window\): 200 of [\d,]+ records, page 2, "
                     r"[\d,]+ records/s, about \d+ s to go", log)
    assert re.search(r"Moesif users \(changed in window\): ([\d,]+) of \1 records, \d+ pages, "
                     r"[\d,]+ records/s, done in", log)
    assert re.search(r"transform: [\d,]+ users, [\d,]+ messages built, [\d,]+ rejected, "
                     r"[\d,]+ users/s, done in", log)
    assert re.search(r"load shard 0: [\d,]+ of [\d,]+ messages, batch 1, [\d,]+ messages/s", log)
    assert re.search(r"load shard 0: [\d,]+ of [\d,]+ messages, \d+ batches, [\d,]+ "
                     r"messages/s, done in", log)
