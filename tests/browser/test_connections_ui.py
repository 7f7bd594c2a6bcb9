"""Admin > Connections in a real browser (issue 17): the Moesif and Segment connection types
with our labels and hidden fields, and the Test button answering for a good key and naming
the problem of a bad one, against the stand-ins.

Airflow is set up as `make airflow` sets it up: the two connections imported into its
database and `[core] test_connection = Enabled`.
"""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, dev_connections, import_connections, stand_ins
from tests.airflow_server import standalone
from tests.browser.chromium import screenshot, sign_in, wait

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(400)]

TOASTS_JS = """
return [...document.querySelectorAll('[data-scope="toast"][data-part="root"]')]
  .map(t => t.innerText.trim());
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("connections-ui")
    with stand_ins(generate(30, seed=3, start=DATA_SPAN[0], end=DATA_SPAN[1])) as (m, s), \
            standalone(root / "airflow", AIRFLOW__CORE__TEST_CONNECTION="Enabled") as server:
        import_connections(server.env, dev_connections(m.url, s.url))
        yield server, m, s


@pytest.fixture(scope="module")
def ui(browser, world):
    return sign_in(browser, world[0])


def row_button(driver, conn_id: str, label: str):  # noqa: ANN201 - a WebElement
    row = wait(driver).until(ec.presence_of_element_located(
        (By.XPATH, f"//tr[td[normalize-space()='{conn_id}']]")),
        f"no row for {conn_id} in Admin > Connections")
    return row.find_element(By.CSS_SELECTOR, f'button[aria-label="{label}"]')


def press_test(driver, conn_id: str) -> str:
    """Click the row's Test button; the toast it brings up."""
    driver.refresh()  # no toast left from an earlier test
    row_button(driver, conn_id, "Test Connection").click()
    toasts: list[str] = []

    def answered(d) -> bool:  # noqa: ANN001
        nonlocal toasts
        toasts = d.execute_script(TOASTS_JS)
        return bool(toasts)

    wait(driver, 60).until(answered, f"testing {conn_id} brought up no message")
    return toasts[-1]


def open_form(driver, button) -> None:  # noqa: ANN001
    button.click()
    wait(driver).until(ec.visibility_of_element_located(
        (By.XPATH, "//*[normalize-space()='Standard Fields']")), "the connection form did not open")


def field_labels(driver) -> list[str]:  # noqa: ANN001
    """The lines the open form shows: its field labels among them."""
    dialog = driver.find_element(By.CSS_SELECTOR, '[role="dialog"]')
    return [line.strip(" *") for line in dialog.text.splitlines() if line.strip(" *")]


def test_the_types_labels_and_hidden_fields(ui):
    driver = ui.driver
    ui.open("/connections")
    for conn_id, kind in (("moesif_default", "moesif"), ("segment_default", "segment")):
        row = wait(driver).until(ec.presence_of_element_located(
            (By.XPATH, f"//tr[td[normalize-space()='{conn_id}']]")))
        cells = [cell.text.strip() for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1:3] == [conn_id, kind], cells

    open_form(driver, row_button(driver, "moesif_default", "Edit Connection"))
    labels = field_labels(driver)  # the standard fields, open first
    assert "Moesif" in labels, labels
    screenshot(driver, "10-moesif-connection-form")
    driver.find_element(By.XPATH, "//*[normalize-space()='Extra Fields']").click()
    time.sleep(0.5)
    labels += field_labels(driver)
    assert {"Management API URL", "Management API key", "Page size"} <= set(labels), labels
    assert not {"Login", "Port", "Schema", "Host", "Password"} & set(labels), labels
    driver.find_element(By.CSS_SELECTOR, '[role="dialog"] button[aria-label="Close"]').click()

    open_form(driver, row_button(driver, "segment_default", "Edit Connection"))
    labels = field_labels(driver)
    assert "Segment" in labels, labels
    driver.find_element(By.XPATH, "//*[normalize-space()='Extra Fields']").click()
    time.sleep(0.5)
    labels += field_labels(driver)
    screenshot(driver, "11-segment-connection-form")
    assert {"Segment host (overrides the region)", "Write key", "Region"} <= set(labels), labels
    assert not {"Login", "Port", "Schema", "Password"} & set(labels), labels
    driver.find_element(By.CSS_SELECTOR, '[role="dialog"] button[aria-label="Close"]').click()


def test_the_test_button_answers_for_good_keys(ui):
    driver = ui.driver
    ui.open("/connections")
    moesif = press_test(driver, "moesif_default")
    assert "Moesif: the key is accepted for users (read:users); the key is accepted for " \
           "companies (read:companies)" in moesif, moesif
    segment = press_test(driver, "segment_default")
    screenshot(driver, "12-segment-connection-tested")
    assert "answered 200" in segment and "does not prove the write key is right" in segment, \
        segment


def test_the_test_button_names_the_problem_of_a_bad_key(ui, world):
    driver = ui.driver
    _, moesif, _ = world
    ui.open("/connections")
    open_form(driver, row_button(driver, "moesif_default", "Edit Connection"))
    key = driver.find_element(By.CSS_SELECTOR, '[role="dialog"] input[type="password"]')
    key.send_keys(Keys.CONTROL, "a")
    key.send_keys("mk-not-the-key")
    driver.find_element(By.XPATH, "//div[@role='dialog']//button[normalize-space()='Save']").click()
    wait(driver).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, '[role="dialog"]')))

    answer = press_test(driver, "moesif_default")
    screenshot(driver, "13-moesif-connection-refused")
    assert "Moesif refused the key for users (401" in answer, answer
    assert "check that moesif_default's password is a current Management API key" in answer
    assert "mk-not-the-key" not in answer
