"""Headless Chromium for the browser tests: starting it, signing in through Airflow's login
page as a person would, and reading what a page shows (tables by heading, counts).

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/provision`` installs them)
and the ``selenium`` package: without them the tests fail, they do not skip. Screenshots
go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.airflow_server import Airflow

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as error:  # reported by `start` as a failure, not a skip
    SELENIUM_MISSING: ImportError | None = error
else:
    SELENIUM_MISSING = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT_SECONDS = 30
WINDOW = (1400, 1000)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}"]

# The rows of a table as {heading: visible text}; columns are found by heading, not position.
TABLE_JS = """
const table = document.querySelector(arguments[0]);
if (!table) return null;
const heads = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
return [...table.querySelectorAll('tbody tr')].map(tr => {
  const cells = [...tr.querySelectorAll('td')].map(td => td.innerText.trim());
  const row = {};
  if (cells.length === heads.length) heads.forEach((h, i) => { row[h] = cells[i]; });
  else row['_text'] = tr.innerText.trim();
  row['_run_id'] = tr.dataset.runId || null;
  return row;
});
"""
COUNTS_JS = """
return Object.fromEntries([...document.querySelectorAll('[data-count]')]
  .map(el => [el.dataset.count, el.innerText.trim()]));
"""


def require_browser() -> None:
    problems = [f"{path} is missing (Debian package {package}: "
                f"`apt-get install -y chromium chromium-driver`)"
                for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
                if not os.access(path, os.X_OK)]
    if SELENIUM_MISSING is not None:
        problems.append(f"the selenium package is missing ({SELENIUM_MISSING}): "
                        f"install requirements-dev.txt into .venv")
    if problems:
        pytest.fail("the browser tests need headless Chromium, chromedriver and selenium:\n  "
                    + "\n  ".join(problems), pytrace=False)


def start(profile: Path, driver_log: Path) -> WebDriver:
    """Headless Chromium with a fresh profile and no background networking."""
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(str(CHROMEDRIVER), log_output=str(driver_log))
    try:
        return webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        pytest.fail(f"chromedriver could not start {CHROMIUM}: {error.msg}", pytrace=False)


class Session:
    """The signed-in browser and the Airflow it talks to."""

    def __init__(self, driver: WebDriver, base: str, airflow: Airflow) -> None:
        self.driver, self.base, self.airflow = driver, base, airflow

    def open(self, path: str) -> None:
        self.driver.switch_to.default_content()
        self.driver.get(self.base + path)

    def enter_iframe(self, title: str) -> None:
        """Switch into Airflow's iframe for an external view, once the plugin page is in it."""
        self.driver.switch_to.default_content()
        wait(self.driver).until(ec.frame_to_be_available_and_switch_to_it(
            (By.CSS_SELECTOR, f'iframe[title="{title}"]')),
            f"no iframe titled {title!r} in Airflow's page {self.driver.current_url}")


def sign_in(driver: WebDriver, airflow: Airflow, username: str = "admin",
            password: str = "admin", shots: bool = False) -> Session:
    """Sign in through Airflow's own login page; returns once the navigation is there."""
    driver.delete_all_cookies()
    driver.get(f"{airflow.base}/")
    wait(driver).until(ec.url_contains("/auth/login"),
                       "Airflow did not send an anonymous visitor to its login page")
    field = wait(driver).until(ec.visibility_of_element_located((By.NAME, "username")),
                               "no username field on the login page")
    if shots:
        screenshot(driver, "01-login")
    field.send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    wait(driver).until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]")),
                       "the Sign in button stayed disabled").click()
    wait(driver).until(lambda d: "/auth/login" not in d.current_url
                       and d.get_cookie("_token") is not None,
                       f"signing in as {username} did not leave the login page")
    wait(driver).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, 'a[aria-label="Segment sync"]')),
        "no 'Segment sync' entry in Airflow's navigation after signing in")
    if shots:
        screenshot(driver, "02-home")
    return Session(driver, airflow.base, airflow)


def keep_failure(driver: WebDriver, name: str) -> None:
    """A failed test's screenshot and page source, for the person reading CI's artifacts."""
    try:
        driver.switch_to.default_content()
        screenshot(driver, name)
        (ARTIFACTS / f"{name}.html").write_text(driver.page_source)
    except WebDriverException:
        pass


def wait(driver: WebDriver, seconds: float = WAIT_SECONDS) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException))


def screenshot(driver: WebDriver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


def table(driver: WebDriver, selector: str) -> list[dict]:
    rows = driver.execute_script(TABLE_JS, selector)
    assert rows is not None, f"no table {selector} on {driver.current_url}"
    return rows


def wait_for_table(driver: WebDriver, selector: str, rows: int) -> list[dict]:
    found: list[dict] = []

    def ready(d: WebDriver) -> bool:
        nonlocal found
        found = d.execute_script(TABLE_JS, selector) or []
        return len(found) == rows and all(len(row) > 2 for row in found)

    try:
        wait(driver).until(ready)
    except TimeoutException:
        pytest.fail(f"expected {rows} rows in {selector} on {driver.current_url}, "
                    f"saw {found!r}", pytrace=False)
    return found


def counts(driver: WebDriver) -> dict[str, str]:
    return driver.execute_script(COUNTS_JS)


def subset(row: dict, expected: dict) -> dict:
    return {key: row.get(key) for key in expected}
