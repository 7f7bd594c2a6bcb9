"""Security: the run history (pages, JSON API, downloads) is only for authenticated Airflow
users. The full route-by-route check lives with the plugin (tests/plugins); this keeps the
guarantee in the reliability suite, including a token signed with another secret."""

from __future__ import annotations

from urllib.parse import quote

import jwt
import pytest

from tests.history_seed import SCHEDULED, history_client

RUN = quote(SCHEDULED, safe="")
ROUTES = ["/segment-sync/runs", f"/segment-sync/runs/{RUN}", f"/segment-sync/runs/{RUN}/rejects",
          f"/segment-sync/runs/{RUN}/export/messages.jsonl",
          f"/segment-sync/runs/{RUN}/export/rejects.csv", "/segment-sync/ui/",
          f"/segment-sync/ui/runs/{RUN}"]


@pytest.fixture(scope="module")
def client(airflow_db, tmp_path_factory):
    with history_client(airflow_db, tmp_path_factory.mktemp("auth")) as test_client:
        yield test_client


@pytest.mark.parametrize("route", ROUTES)
def test_no_route_gives_data_without_a_token(client, route):
    response = client.get(route)
    assert response.status_code == 401
    assert "usr" not in response.text and "u1@example.com" not in response.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_signed_with_another_secret_gets_no_data(client, route):
    forged = jwt.encode({"sub": "admin", "role": "ADMIN"}, "not-the-server-secret-" + "x" * 64,
                        algorithm="HS512")
    response = client.get(route, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code in (401, 403)
    assert "u1@example.com" not in response.text and SCHEDULED not in response.text
