"""Security: the run history (pages, JSON API, downloads) is only for authenticated Airflow
users. The full route-by-route check lives with the plugin (tests/plugins); this keeps the
guarantee in the reliability suite, including a token signed with another secret."""

from __future__ import annotations

import json
from urllib.parse import quote

import jwt
import orjson
import pytest

from tests.history_seed import SCHEDULED, seed

RUN = quote(SCHEDULED, safe="")
ROUTES = ["/segment-sync/runs", f"/segment-sync/runs/{RUN}", f"/segment-sync/runs/{RUN}/rejects",
          f"/segment-sync/runs/{RUN}/export/messages.jsonl",
          f"/segment-sync/runs/{RUN}/export/rejects.csv", "/segment-sync/ui/",
          f"/segment-sync/ui/runs/{RUN}"]


@pytest.fixture(scope="module")
def client(airflow_db, tmp_path_factory):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("auth")
    url = f"sqlite:///{root / 'audit.db'}"
    seed(url, staging_root=(root / "staging").as_uri())
    (airflow_db / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({"admin": "admin"}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        env.setenv("AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT", orjson.dumps(
            {"conn_type": "generic", "extra": {"sqlalchemy_url": url}}).decode())
        env.setenv("MOESIF_SEGMENT_STAGING_ROOT", (root / "staging").as_uri())
        with TestClient(create_app()) as test_client:
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
