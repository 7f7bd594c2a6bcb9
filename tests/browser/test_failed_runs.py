"""Two real failed runs in the history (issue 16), through `airflow standalone`'s scheduler.

The DAG runs against the stand-ins twice, triggered through Airflow's REST API as the UI does:

- a window that ends before it starts: ``check_window`` refuses it before anything is read;
- a good window whose load Segment refuses with a 400 at the third batch, after two batches
  were delivered.

Both runs are then read the three ways an operator reads them, and must say the same: the
history page in Chromium (filtered on ``failed`` with the page's own form), each run's page,
the JSON API, and the CLI. Each shows the status, the failing task, the one-line error and
what was delivered before the failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.airflow_server import Airflow, standalone
from tests.browser.chromium import counts, screenshot, sign_in, table, wait, wait_for_table
from tests.support import DAG_ID

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]

BAD_WINDOW = "manual__bad_window"
REFUSED_LOAD = "manual__refused_load"
RUN_SECONDS = 240
BAD_WINDOW_ERROR = ("param 'start' (2026-11-25T01:00:00+00:00) must be before "
                    "'end' (2026-11-25T00:00:00+00:00)")
BAD_WINDOW_NOTE = ("the run's params were refused, so its window above is its data interval; "
                   "trigger a new run with a corrected window")
SEGMENT_ANSWER = "Invalid JSON at item 17"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("failed-runs")
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    with MoesifStandIn(dataset.users, dataset.companies, api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment, \
            standalone(root / "airflow", MOESIF_SEGMENT_MAX_BATCH_BYTES="60000",
                       MOESIF_SEGMENT_MAX_REFUSED_SPLITS="0",  # a refused batch fails the load
                       **connection_env(moesif.url, segment.url, moesif_key="mk",
                                        write_key="wk")) as server:
        server.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        # Unpaused, the scheduler runs the latest hour (nothing in it): let it finish first.
        server.wait(lambda: _runs(server) and all(
            run["state"] in ("success", "failed") for run in _runs(server)), RUN_SECONDS,
            "the scheduler's own run of the latest hour")
        moesif.clear_log()

        bad = _run(server, BAD_WINDOW, "2026-11-25T01:00:00Z",
                   {"start": DEMO_WINDOW[1].isoformat(), "end": DEMO_WINDOW[0].isoformat()})
        assert moesif.requests == [], "a refused window read from Moesif"

        segment.inject(400, after=2, times=10, body={"code": "invalid_request",
                                                     "message": SEGMENT_ANSWER})
        refused = _run(server, REFUSED_LOAD, "2026-11-25T01:05:00Z",
                       {"start": DEMO_WINDOW[0].isoformat(), "end": DEMO_WINDOW[1].isoformat()})
        delivered = len(segment.delivered)
        yield server, {BAD_WINDOW: bad, REFUSED_LOAD: refused}, delivered


def _runs(server: Airflow) -> list[dict]:
    return server.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]


def _run(server: Airflow, run_id: str, logical_date: str, conf: dict) -> dict[str, str]:
    """Trigger one run as the UI's form does and wait for it to end; its tasks' states."""
    body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
    for _ in range(30):  # SQLite answers 503 while the scheduler holds it
        response = server.session.post(f"{server.base}/api/v2/dags/{DAG_ID}/dagRuns",
                                       json=body, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(1)
    assert response.ok, f"trigger {run_id}: {response.status_code} {response.text[:500]}"
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}"
    server.wait(lambda: server.api("GET", path)["state"] in ("success", "failed"),
                RUN_SECONDS, f"run {run_id} to end")
    assert server.api("GET", path)["state"] == "failed", server.tail()
    instances = server.api("GET", f"{path}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in instances}


def expected(delivered: int) -> dict[str, dict]:
    """Both failed runs as the JSON API and the CLI show them."""
    return {
        BAD_WINDOW: {"status": "failed", "failed_task": "check_window",
                     "error": BAD_WINDOW_ERROR, "sent": 0, "batches": 0, "considered": 0,
                     "window_source": "data_interval", "notes": [BAD_WINDOW_NOTE]},
        REFUSED_LOAD: {"status": "failed", "failed_task": "load", "sent": delivered,
                       "batches": 2, "window_source": "params",
                       "notes": [f"2 batch(es), {delivered:,} messages, reached Segment before "
                                 "the failure; fix the cause and clear the load task: it "
                                 "resumes after batch 2"]},
    }


def pick(row: dict, like: dict) -> dict:
    return {key: row.get(key) for key in like}


def test_both_runs_failed_where_they_should(world):
    _, states, delivered = world
    assert states[BAD_WINDOW]["check_window"] == "failed"
    assert {states[BAD_WINDOW][task] for task in ("extract_users", "extract_companies")} == {
        "upstream_failed"}
    assert states[REFUSED_LOAD]["load"] == "failed"
    assert states[REFUSED_LOAD]["transform"] == "success"
    assert 0 < delivered < 400


def test_the_json_api_lists_both_failed_runs(world):
    server, _, delivered = world
    page = server.api("GET", "/segment-sync/runs", params={"status": "failed"})
    rows = {row["run_id"]: row for row in page["runs"]}
    assert sorted(rows) == [BAD_WINDOW, REFUSED_LOAD]
    for run_id, like in expected(delivered).items():
        if "error" not in like:
            assert rows[run_id]["error"].startswith("Segment answered 400 to batch 3")
            assert SEGMENT_ANSWER in rows[run_id]["error"]
            assert "Traceback" not in rows[run_id]["error"]
        assert pick(rows[run_id], like) == like
    detail = server.api("GET", f"/segment-sync/runs/{quote(REFUSED_LOAD)}")
    ledger = [(batch["batch_no"], batch["status"]) for batch in detail["ledger"]]
    assert ledger == [(1, "sent"), (2, "sent"), (3, "failed")], detail["ledger"]
    assert sum(batch["messages"] for batch in detail["ledger"][:2]) == delivered


def test_the_cli_lists_both_failed_runs(world):
    server, _, delivered = world
    # As an operator runs it on the Airflow machine: the store comes from Airflow's connection.
    output = subprocess.run(
        [sys.executable, "-m", "moesif_segment_sync", "audit", "runs", "--status", "failed",
         "--format", "json"], env=server.env, capture_output=True, text=True, check=True).stdout
    rows = {row["run_id"]: row for row in json.loads(output)}
    assert sorted(rows) == [BAD_WINDOW, REFUSED_LOAD]
    for run_id, like in expected(delivered).items():
        assert pick(rows[run_id], like) == like


def test_the_history_page_shows_both_failed_runs_and_what_to_do_next(browser, world):
    server, _, delivered = world
    ui = sign_in(browser, server)
    driver = ui.driver
    ui.open("/plugin/segment-sync")
    ui.enter_iframe("Segment sync")
    wait_for_table(driver, "#runs", rows=3)  # the scheduler's own run, and ours

    Select(driver.find_element(By.NAME, "status")).select_by_visible_text("failed")
    driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    # Airflow mirrors the iframe's new address into its own and draws the iframe again.
    wait(driver).until(lambda d: "status=failed" in d.current_url)
    ui.enter_iframe("Segment sync")
    rows = wait_for_table(driver, "#runs", rows=2)
    shown = {row["_run_id"]: row for row in rows}
    assert shown[BAD_WINDOW]["status"] == f"failed in check_window\n{BAD_WINDOW_ERROR}"
    assert shown[BAD_WINDOW]["window"] == "2026-11-25 00:00 → 2026-11-25 01:00"
    assert (shown[BAD_WINDOW]["sent"], shown[BAD_WINDOW]["batches"]) == ("0", "0")
    status, error = shown[REFUSED_LOAD]["status"].split("\n")
    assert status == "failed in load" and error.startswith("Segment answered 400 to batch 3")
    assert (shown[REFUSED_LOAD]["sent"], shown[REFUSED_LOAD]["batches"]) == (str(delivered), "2")
    screenshot(driver, "08-history-failed-runs")

    driver.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{REFUSED_LOAD}"] td a').click()
    heading = wait(driver).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == f"{REFUSED_LOAD} failed"
    assert driver.find_element(By.ID, "error").text.startswith(
        "Failed in load: Segment answered 400 to batch 3")
    assert driver.find_element(By.ID, "notes").text == expected(delivered)[REFUSED_LOAD][
        "notes"][0]
    assert counts(driver)["sent"] == str(delivered)
    ledger = [(row["batch"], row["status"]) for row in table(driver, "#ledger")]
    assert ledger == [("1", "sent"), ("2", "sent"), ("3", "failed")], ledger
    screenshot(driver, "09-run-failed-in-load")

    ui.open(f"/segment-sync/ui/runs/{quote(BAD_WINDOW, safe='')}")
    assert wait(driver).until(ec.visibility_of_element_located((By.ID, "error"))).text == (
        f"Failed in check_window: {BAD_WINDOW_ERROR}")
    assert table(driver, "#ledger")[0].get("_text") == "No batches (nothing to send)."
