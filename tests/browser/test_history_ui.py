"""The run history in a real browser: headless Chromium, through chromedriver, against
`airflow standalone` (issue 5).

Seeds an audit store with the three runs of ``tests.history_seed``, starts Airflow with that
store, signs in through Airflow's own login page as a person would, then checks on screen:

- the "Segment sync" entry of Airflow's navigation: the plugin's history page inside Airflow's
  iframe, with the three runs and their counts, and one run opened from it (also as a deep
  link, ``/plugin/segment-sync/<the page's own path>``);
- the plugin's run page on its own (``/segment-sync/ui/runs/<run id>``): counts, the batch
  ledger, the reject and its raw record;
- the "Segment sync audit" tab of a DAG run in Airflow's UI.

Screenshots of each page go to ``tests/artifacts/`` (and ``FAILED-<test>.png`` / ``.html``
when a test fails). Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package: without them the tests fail (CI installs them), they do not skip.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from sandbox.environment import connection_env
from tests.airflow_server import DAG_ID, standalone
from tests.browser.chromium import (
    counts,
    screenshot,
    sign_in,
    subset,
    table,
    wait,
    wait_for_table,
)
from tests.history_seed import BACKFILL, MANUAL, SCHEDULED, seed

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

# What the history table shows for each seeded run, by column heading.
EXPECTED_ROWS = {
    MANUAL: {"window": "2026-11-25 02:00 → 2026-11-25 03:00", "mode": "manual (dry run)",
             "started": "2026-11-25 03:10:00",
             "status": "failed in audit\n1 of 4 users rejected (25.0%), over the 5.0% threshold",
             "considered": "4", "sent": "0", "would send": "3", "unchanged": "0",
             "rejected": "1", "batches": "1", "duration": "2.0 s", "run": MANUAL},
    SCHEDULED: {"window": "2026-11-25 00:00 → 2026-11-25 01:00", "mode": "scheduled",
                "started": "2026-11-25 01:00:05", "status": "success", "considered": "10",
                "sent": "7", "would send": "", "unchanged": "2",
                "rejected": "1", "batches": "1", "duration": "4.5 s", "run": SCHEDULED},
    BACKFILL: {"window": "2026-11-24 00:00 → 2026-11-24 01:00", "mode": "backfill",
               "started": "2026-11-26 07:00:00", "status": "success", "considered": "5",
               "sent": "5", "would send": "", "unchanged": "0",
               "rejected": "0", "batches": "1", "duration": "3.0 s", "run": BACKFILL},
}
SCHEDULED_COUNTS = {"considered": "10", "sent": "7", "unchanged": "2", "rejected": "1"}
SCHEDULED_LEDGER = {"batch": "1", "status": "sent", "messages": "7", "bytes": "4000",
                    "attempts": "2", "error": ""}
SCHEDULED_REJECT = {"entity": "user", "id": "(none)", "kind": "no_user_id",
                    "reason": "user_id is blank"}
MANUAL_COUNTS = {"considered": "4", "sent": "0", "would_send": "3", "unchanged": "0",
                 "rejected": "1"}
MANUAL_ERROR = "Failed in audit: 1 of 4 users rejected (25.0%), over the 5.0% threshold"

# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def airflow(browser, tmp_path_factory):
    """`airflow standalone` reading a seeded audit store, with the DAG paused and one DAG run
    (MANUAL, queued: a paused DAG runs nothing) for the run page's tab."""
    root = tmp_path_factory.mktemp("history-ui")
    url = f"sqlite:///{root / 'audit.db'}"
    staging_root = (root / "staging").as_uri()
    seed(url, staging_root=staging_root)
    with standalone(root / "airflow", **connection_env(audit_url=url),
                    MOESIF_SEGMENT_STAGING_ROOT=staging_root) as server:
        assert server.api("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"], \
            "the DAG must stay paused: a run of it would write to the seeded store"
        # Airflow reserves scheduled__ ids, so only the manual run can be made.
        server.trigger(MANUAL, "2026-11-25T03:10:00Z")
        yield server


@pytest.fixture(scope="module")
def ui(browser, airflow):
    """The browser, signed in through Airflow's login page as admin/admin."""
    # Before signing in, the plugin's page gives nothing away.
    browser.get(f"{airflow.base}/segment-sync/ui/")
    assert SCHEDULED not in browser.page_source, "the history page answered without a session"
    return sign_in(browser, airflow, shots=True)


# ---------------------------------------------------------------- helpers

def check_scheduled_run_page(driver: WebDriver) -> None:
    """The SCHEDULED run's page: counts, the batch ledger, the reject and its raw record."""
    heading = wait(driver).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")),
                                 f"no heading on {driver.current_url}")
    assert heading.text == f"{SCHEDULED} success"
    assert counts(driver) == SCHEDULED_COUNTS
    [batch] = table(driver, "#ledger")
    assert subset(batch, SCHEDULED_LEDGER) == SCHEDULED_LEDGER, batch
    assert driver.find_element(By.XPATH, "//h2[starts-with(., 'Rejects')]").text == "Rejects (1)"
    [reject] = table(driver, "#rejects")
    assert subset(reject, SCHEDULED_REJECT) == SCHEDULED_REJECT, reject
    raw = driver.find_element(By.CSS_SELECTOR, "#rejects details pre")
    assert not raw.is_displayed(), "the raw record should be folded until asked for"
    driver.find_element(By.CSS_SELECTOR, "#rejects details summary").click()
    wait(driver).until(ec.visibility_of(raw), "the raw record did not unfold")
    assert raw.text == '{"user_id":"  ","email":"x@example.com"}'
    links = {a.text: a.get_attribute("href") for a in driver.find_elements(
        By.CSS_SELECTOR, "a[href*='/export/']")}
    assert len(links) == 2 and all(quote(SCHEDULED, safe="") in href
                                   for href in links.values()), links


def iframe_fit(driver: WebDriver, title: str) -> dict:
    """How tall Airflow made the iframe and how tall its page is (for the report)."""
    driver.switch_to.default_content()
    frame = driver.find_element(By.CSS_SELECTOR, f'iframe[title="{title}"]')
    outer = {"iframe_height": frame.size["height"], "iframe_width": frame.size["width"],
             "viewport_height": driver.execute_script("return window.innerHeight")}
    driver.switch_to.frame(frame)
    outer["page_height"] = driver.execute_script(
        "return document.documentElement.scrollHeight")
    outer["page_width"] = driver.execute_script("return document.documentElement.scrollWidth")
    return outer


# ---------------------------------------------------------------- tests

def test_history_in_airflows_navigation(ui):
    driver = ui.driver
    ui.open("/")
    wait(driver).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, 'a[aria-label="Segment sync"]'))).click()
    wait(driver).until(lambda d: urlsplit(d.current_url).path.startswith("/plugin/segment-sync"),
                       "the navigation entry did not open /plugin/segment-sync")
    ui.enter_iframe("Segment sync")

    rows = wait_for_table(driver, "#runs", rows=3)
    assert [row["_run_id"] for row in rows] == [BACKFILL, MANUAL, SCHEDULED], \
        "runs are not the last started first"
    for row in rows:
        expected = EXPECTED_ROWS[row["_run_id"]]
        assert subset(row, expected) == expected, row
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert "(3 runs of moesif_to_segment)" in heading, heading
    chart = driver.find_element(By.CSS_SELECTOR,
                                "svg[aria-label='sent, unchanged and rejected per run']")
    assert chart.is_displayed()
    for kind in ("sent", "unchanged", "rejected"):
        assert len(chart.find_elements(By.CSS_SELECTOR, f"rect.{kind}")) == 3, kind
    titles = [t.get_attribute("textContent") for t in chart.find_elements(By.TAG_NAME, "title")]
    assert f"{MANUAL}: would send 3" in titles and f"{SCHEDULED}: unchanged 2" in titles
    fit = iframe_fit(driver, "Segment sync")
    driver.switch_to.default_content()
    screenshot(driver, "03-history-in-airflow")
    assert fit["iframe_height"] > 300 and fit["iframe_width"] > 800, fit

    # A run opened from the list stays inside Airflow: the iframe navigates and Airflow
    # mirrors its path into the address bar (/plugin/segment-sync/<the page's path>).
    ui.enter_iframe("Segment sync")
    driver.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{SCHEDULED}"] td a').click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "counts")),
                       "the run page did not open in the iframe")
    check_scheduled_run_page(driver)
    driver.switch_to.default_content()
    run_path = f"/plugin/segment-sync/segment-sync/ui/runs/{SCHEDULED}"
    wait(driver).until(lambda d: unquote(urlsplit(d.current_url).path) == run_path,
                       f"Airflow's address bar did not follow the iframe to {run_path}")
    screenshot(driver, "04-run-in-airflow")

    # That address is a working deep link.
    driver.refresh()
    ui.enter_iframe("Segment sync")
    wait(driver).until(ec.presence_of_element_located((By.ID, "counts")),
                       f"the deep link {run_path} did not open the run page")
    assert counts(driver) == SCHEDULED_COUNTS


def test_the_plugins_run_page(ui):
    driver = ui.driver
    ui.open(f"/segment-sync/ui/runs/{quote(SCHEDULED, safe='')}")
    check_scheduled_run_page(driver)
    screenshot(driver, "05-run-page")
    # The back link leaves any iframe (a DAG run's tab included) for Airflow's history page.
    driver.find_element(By.LINK_TEXT, "← run history").click()
    # Airflow's page for the plugin soon rewrites its own address to follow the iframe
    # (/plugin/segment-sync/<the iframe's path>), so wait for the prefix, not the exact path.
    wait(driver).until(lambda d: urlsplit(d.current_url).path.startswith("/plugin/segment-sync"),
                       "the back link did not open Airflow's /plugin/segment-sync")
    ui.enter_iframe("Segment sync")
    wait_for_table(driver, "#runs", rows=3)


def test_the_dag_runs_segment_sync_audit_tab(ui):
    driver = ui.driver
    ui.open(f"/dags/{DAG_ID}/runs/{quote(MANUAL, safe='')}")
    tab = wait(driver).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, 'a[title="Segment sync audit"]')),
        "no 'Segment sync audit' tab on the DAG run's page")
    tab.click()
    wait(driver).until(ec.url_matches(r"/plugin/segment-sync-run/?$"),
                       "the tab did not open .../plugin/segment-sync-run")
    ui.enter_iframe("Segment sync audit")
    heading = wait(driver).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")),
                                 "the audit tab's iframe stayed empty")
    assert heading.text == f"{MANUAL} failed"
    assert counts(driver) == MANUAL_COUNTS
    labels = [dt.text for dt in driver.find_elements(By.CSS_SELECTOR, "#counts dt")]
    assert "would send" in labels, labels  # a dry run
    params = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#params li")]
    assert params == ["start: not set", "end: not set", "full refresh: no", "dry run: yes",
                      "force: no"], params
    assert driver.find_element(By.CSS_SELECTOR, "p.failed").text == MANUAL_ERROR
    ledger = table(driver, "#ledger")
    assert [row.get("_text") for row in ledger] == ["No batches (nothing to send)."], ledger
    assert table(driver, "#rejects")[0].get("_text") == "No rejects."
    src = driver.execute_script("return location.pathname + location.search")
    assert src == f"/segment-sync/ui/runs/{quote(MANUAL, safe='')}?dag_id={DAG_ID}", src
    fit = iframe_fit(driver, "Segment sync audit")
    driver.switch_to.default_content()
    screenshot(driver, "06-dag-run-tab")
    assert fit["iframe_height"] > 200, f"the audit tab's iframe is too short to use: {fit}"


def test_the_trigger_form_shows_titles_formats_and_sections(ui):
    driver = ui.driver
    ui.open(f"/dags/{DAG_ID}")
    wait(driver).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, 'button[aria-label="Trigger Dag"]'))).click()
    wait(driver).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=config-form]")), "the trigger form did not open")
    seen = {}
    for section, titles in (("Window", ("Window start", "Window end", "Allow a long window")),
                            ("Modes", ("Dry run", "Full refresh", "Force", "Doctor first",
                                       "Retry the rejects of run"))):
        trigger = driver.find_element(By.CSS_SELECTOR, f"button[id$=':trigger:{section}']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", trigger)
        wait(driver).until(ec.element_to_be_clickable(trigger)).click()
        wait(driver).until(lambda d, b=trigger: b.get_attribute("aria-expanded") == "true",
                           f"the {section} section did not open")
        content = driver.find_element(By.CSS_SELECTOR, f"[id$=':content:{section}']")
        wait(driver).until(lambda d, c=content, t=titles: all(x in c.text for x in t),
                           f"the {section} section does not show {titles}")
        seen[section] = (content.text, [(field.get_attribute("type"),
                                         field.get_attribute("outerHTML")[:200])
                                        for field in content.find_elements(By.TAG_NAME, "input")])
        screenshot(driver, f"07-trigger-form-{section.lower()}")
    (window, inputs), (modes, _) = seen["Window"], seen["Modes"]
    assert "ISO date or datetime, e.g. 2026-11-25T13:00:00Z" in window, window
    assert "When both are set they win over the data interval" in window, window
    assert "each backfill run always syncs its own interval" in window, window
    assert "Try this first." in modes, modes
    # The booleans carry no "required" star; the window is picked as a date and time.
    assert "*" not in modes, modes
    assert window.count("Select date and time") == 2, window  # Airflow's date-time pickers
    assert [kind for kind, _ in inputs] == ["checkbox"], inputs  # allow_long_window's switch
    lines = (window + "\n" + modes).splitlines()
    assert not {"start", "end", "full_refresh", "dry_run"} & set(lines)  # titles, not raw keys


def test_the_browser_is_offline_friendly(ui):
    """The pages load nothing from outside this Airflow (they must work with no internet)."""
    driver = ui.driver
    for path in ("/segment-sync/ui/", f"/segment-sync/ui/runs/{quote(SCHEDULED, safe='')}"):
        ui.open(path)
        wait(driver).until(ec.presence_of_element_located((By.TAG_NAME, "h1")))
        urls = driver.execute_script(
            "return [...document.querySelectorAll('[src],link[href],script[src]')]"
            ".map(e => e.src || e.href)")
        foreign = [u for u in urls if u and not u.startswith(ui.base)
                   and not re.match(r"^(data|about|blob):", u)]
        assert foreign == [], f"{path} loads {foreign}"

