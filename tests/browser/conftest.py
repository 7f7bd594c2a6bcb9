"""The browser fixture shared by the browser tests, and a screenshot of each failed test."""

from __future__ import annotations

import pytest

from tests.browser import chromium


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, one per test module."""
    driver = chromium.start(tmp_path_factory.mktemp("chromium-profile"),
                            tmp_path_factory.mktemp("chromedriver") / "log")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "browser" in request.fixturenames:
        chromium.keep_failure(request.getfixturevalue("browser"), f"FAILED-{request.node.name}")
