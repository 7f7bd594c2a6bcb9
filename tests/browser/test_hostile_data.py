"""Hostile data in a real browser (issue 18): headless Chromium against `airflow standalone`
whose audit store holds ``tests.hostile_seed``'s run, and a DAG run with the same hostile id
(allowed by a widened ``AIRFLOW__SCHEDULER__ALLOWED_RUN_ID_PATTERN``) for the run's tab.

On the history page (in Airflow's iframe), the run page and the DAG run's tab: no payload ran
(``window.__pwned`` stays undefined in the page and in Airflow's, no dialog opened) and each
hostile value is on screen as the text it is. The downloads, fetched over HTTP with a token,
neutralise formulas and are named from a safe alphabet. A last test proves the check can
fail: the same payload inserted as markup does run.
"""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import quote

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from sandbox.environment import connection_env
from tests import hostile_seed as hostile
from tests.airflow_server import DAG_ID, standalone
from tests.browser.chromium import screenshot, sign_in, wait, wait_for_table

pytestmark = [pytest.mark.airflow, pytest.mark.browser, pytest.mark.timeout(300)]

RUN = quote(hostile.RUN_ID, safe="")
PWNED_JS = "return [typeof window.__pwned, typeof window.top.__pwned]"
TEXTS_JS = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"


@pytest.fixture(scope="module")
def airflow(browser, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-ui")
    url = f"sqlite:///{root / 'audit.db'}"
    staging_root = (root / "staging").as_uri()
    hostile.seed(url, staging_root=staging_root)
    with standalone(root / "airflow", **connection_env(audit_url=url),
                    MOESIF_SEGMENT_STAGING_ROOT=staging_root,
                    AIRFLOW__SCHEDULER__ALLOWED_RUN_ID_PATTERN=".*") as server:
        assert server.api("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"], \
            "the DAG must stay paused: a run of it would write to the seeded store"
        server.trigger(hostile.RUN_ID, hostile.LOGICAL_DATE)
        yield server


@pytest.fixture(scope="module")
def ui(browser, airflow):
    return sign_in(browser, airflow)


def nothing_ran(driver: WebDriver) -> None:
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        pass
    else:
        pytest.fail(f"a payload opened a dialog: {text!r}")
    assert driver.execute_script(PWNED_JS) == ["undefined", "undefined"], \
        "a payload ran: window.__pwned is set"


def texts(driver: WebDriver, selector: str) -> list[str]:
    return driver.execute_script(TEXTS_JS, selector)


def as_read(values: list[str]) -> list[str]:
    """The values as an HTML parser hands them to the page: every CR becomes a LF."""
    return [value.replace("\r\n", "\n").replace("\r", "\n") for value in values]


def test_the_history_in_airflow_shows_the_run_id_as_text(ui):
    driver = ui.driver
    ui.open("/plugin/segment-sync")
    ui.enter_iframe("Segment sync")
    [row] = wait_for_table(driver, "#runs", rows=1)
    assert row["_run_id"] == hostile.RUN_ID
    assert texts(driver, "#runs td.run a") == [hostile.RUN_ID]
    assert texts(driver, "svg text")[1:] == [hostile.RUN_ID, hostile.RUN_ID]
    assert f"{hostile.RUN_ID}: rejected {len(hostile.USER_IDS)}" in texts(driver, "svg title")
    assert texts(driver, "#runs td div.error") == [hostile.ERROR]
    nothing_ran(driver)
    driver.switch_to.default_content()
    screenshot(driver, "hostile-01-history")


def check_run_page(driver: WebDriver) -> None:
    heading = wait(driver).until(ec.presence_of_element_located((By.TAG_NAME, "h1")),
                                 f"no heading on {driver.current_url}")
    assert heading.get_attribute("textContent") == f"{hostile.RUN_ID} failed"
    # Isolated, so its right-to-left override cannot turn "failed" around.
    assert texts(driver, "h1 bdi") == [hostile.RUN_ID]
    assert driver.execute_script("return document.title") == f"Segment sync: {hostile.RUN_ID}"
    assert texts(driver, "#error") == [f"Failed in {hostile.FAILED_TASK}: {hostile.ERROR}"]
    assert texts(driver, "#notes li") == hostile.NOTES
    assert texts(driver, "#params li") == [
        f"start: {hostile.PARAMS['start']}", "end: not set", "dry run: yes",
        f"{hostile.BREAKOUT.replace('_', ' ')}: {hostile.JS_URL}"]  # a name reads with spaces
    assert texts(driver, "#rejects tbody td:nth-child(2)") == as_read(hostile.USER_IDS)
    assert texts(driver, "#rejects tbody td:nth-child(4)") == as_read(hostile.REASONS)
    assert texts(driver, "#rejects pre") == as_read([hostile.raw_record(n)
                                                     for n in range(len(hostile.USER_IDS))])
    assert texts(driver, "#ledger tbody td:last-child") == [hostile.LEDGER_ERROR]
    nothing_ran(driver)


def test_the_run_page_shows_every_hostile_value_as_text(ui):
    ui.open(f"/segment-sync/ui/runs/{RUN}")
    check_run_page(ui.driver)
    screenshot(ui.driver, "hostile-02-run-page")


def test_the_dag_runs_tab_shows_the_run(ui):
    driver = ui.driver
    ui.open(f"/dags/{DAG_ID}/runs/{RUN}")
    wait(driver).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, 'a[title="Segment sync audit"]')),
        "no 'Segment sync audit' tab on the hostile DAG run's page").click()
    ui.enter_iframe("Segment sync audit")
    check_run_page(driver)
    driver.switch_to.default_content()
    nothing_ran(driver)
    screenshot(driver, "hostile-03-dag-run-tab")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("what", ["rejects", "messages"])
def test_a_download_over_http_is_neutralised_and_safely_named(airflow, what, fmt):
    response = airflow.session.get(f"{airflow.base}/segment-sync/runs/{RUN}/export/{what}.{fmt}",
                                   timeout=60)
    assert response.status_code == 200
    assert re.fullmatch(rf'attachment; filename="[A-Za-z0-9._-]{{1,100}}-{what}\.{fmt}"',
                        response.headers["content-disposition"])
    field, values = ("entity_id", hostile.USER_IDS) if what == "rejects" else \
        ("userId", hostile.USER_IDS[:-1])
    if fmt == "jsonl":
        assert [json.loads(line)[field] for line in response.text.splitlines()] == values
        return
    csv.field_size_limit(2 * len(hostile.BIG))
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row[field] for row in rows] == [
        "'" + value if value[0] in "=+-@\t\r" else value for value in values]


def test_the_check_sees_a_payload_that_runs(ui):
    """Without this, an Airflow that blocked inline handlers would make the checks above
    pass whatever the pages did."""
    driver = ui.driver
    ui.open(f"/segment-sync/ui/runs/{RUN}")
    driver.execute_script("document.body.insertAdjacentHTML('beforeend', arguments[0])",
                          hostile.IMG)
    wait(driver).until(lambda d: d.execute_script("return window.__pwned") == "img",
                       "the payload inserted as markup did not run: the checks prove nothing")
