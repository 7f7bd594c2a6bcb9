"""Fault injection, which both stand-ins share: each test runs against both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pytest
import requests

from sandbox._http import StandInServer
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn


@dataclass
class Api:
    """A started stand-in and one valid API call to make against it."""

    server: StandInServer
    call: Callable[[], requests.Response]
    path: str


@pytest.fixture(params=["moesif", "segment"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    session = requests.Session()
    if request.param == "moesif":
        server: StandInServer = MoesifStandIn([{"user_id": "usr_1"}])
        session.headers["Authorization"] = "Bearer test-moesif-key"
        path, body = "/v1/search/~/search/users", b"{}"
    else:
        server = SegmentStandIn()
        session.auth = ("test-write-key", "")
        path, body = "/v1/batch", b'{"batch": [], "sentAt": "2026-11-25T00:00:00Z"}'
    with server, session:
        yield Api(server, lambda: session.post(server.url + path, data=body, timeout=5), path)


def statuses(api: Api, n: int) -> list[int]:
    return [api.call().status_code for _ in range(n)]


def test_injected_429_carries_retry_after_then_service_resumes(api):
    api.server.inject(429, retry_after=3)

    limited = api.call()
    after = api.call()

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert "message" in limited.json()
    assert after.status_code == 200


def test_fault_answers_the_next_times_requests_after_skipping_after(api):
    api.server.inject(503, times=2, after=1)

    assert statuses(api, 4) == [200, 503, 503, 200]


def test_faults_queue_in_order(api):
    api.server.inject(500)
    api.server.inject(502)

    assert statuses(api, 3) == [500, 502, 200]


def test_fault_only_hits_paths_containing_path_contains(api):
    api.server.inject(500, path_contains="/no/such/path")

    assert statuses(api, 1) == [200]
    assert len(api.server.faults.pending()) == 1


def test_fault_body_replaces_the_error_body(api):
    api.server.inject(502, body="<html>Bad Gateway</html>")

    response = api.call()

    assert response.status_code == 502
    assert response.text == "<html>Bad Gateway</html>"


def test_delay_makes_a_slow_but_normal_answer(api):
    api.server.inject(delay=0.3)

    started = time.monotonic()
    response = api.call()

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


def test_delay_longer_than_the_client_timeout_times_out(api):
    api.server.inject(delay=1.0)

    with pytest.raises(requests.Timeout):
        requests.post(api.server.url + api.path, data=b"{}", timeout=0.2)


def test_a_delayed_request_has_arrived_before_it_is_logged(api):
    api.server.inject(delay=5.0)
    timed_out = []

    def call() -> None:
        try:
            requests.post(api.server.url + api.path, data=b"{}", timeout=0.5)
        except requests.Timeout as exc:
            timed_out.append(exc)

    caller = threading.Thread(target=call)
    caller.start()

    api.server.wait_for_arrivals(1, timeout=5)

    assert api.server.requests == []
    with pytest.raises(TimeoutError, match="1 requests arrived"):
        api.server.wait_for_arrivals(2, timeout=0.1)
    caller.join()
    assert len(timed_out) == 1


def test_truncate_sends_a_200_whose_json_is_cut_off(api):
    api.server.inject(truncate=True)

    response = api.call()

    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_reset_drops_the_connection_without_an_answer(api):
    api.server.inject(reset=True)

    with pytest.raises(requests.ConnectionError):
        api.call()
    assert api.call().status_code == 200


def test_faults_can_be_injected_over_http(api):
    response = requests.post(f"{api.server.url}/_sandbox/faults",
                             json={"status": 429, "retry_after": 1, "times": 2})

    assert response.status_code == 200
    assert statuses(api, 3) == [429, 429, 200]


def test_bad_fault_over_http_is_a_400(api):
    response = requests.post(f"{api.server.url}/_sandbox/faults", json={"status": 429,
                                                                        "nonsense": True})

    assert response.status_code == 400


def test_control_routes_are_never_faulted(api):
    api.server.inject(500)

    control = requests.get(f"{api.server.url}/_sandbox/requests")

    assert control.status_code == 200
    assert statuses(api, 1) == [500]


def test_log_names_the_fault_that_answered(api):
    api.server.inject(503)
    api.server.inject(reset=True)

    api.call()
    with pytest.raises(requests.ConnectionError):
        api.call()
    api.call()

    assert [(entry["status"], entry["fault"]) for entry in api.server.requests] == [
        (503, "status"), (None, "reset"), (200, None)]
