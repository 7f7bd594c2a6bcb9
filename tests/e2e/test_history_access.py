"""Who may read the run history (issue 18), decided by a real auth manager that can express
per-DAG access: the FAB auth manager, with roles that can read this DAG's runs, edit them, or
read only another DAG's.

`airflow standalone` always swaps in the simple auth manager (it cannot say "this DAG but not
that one"), so this starts what standalone would start for these requests, Airflow's
api-server, on a migrated database with the FAB auth manager, its users and roles, and asks
every route of the plugin over real HTTP with each user's real token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import requests

from moesif_segment_sync.airflow.plugin import app
from sandbox.environment import AIRFLOW, airflow, airflow_env, connection_env
from tests.history_seed import SCHEDULED, seed
from tests.postgres import free_port
from tests.support import DAG_ID

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
RUN = quote(SCHEDULED, safe="")
# Every route of the plugin, with the access it needs: "runs" (read the DAG's runs) or
# "personal" (its raw records and downloads). A route added without being listed here fails
# test_every_route_is_listed, so none escapes the checks below.
ROUTES = {
    "/runs": ("/segment-sync/runs", "runs"),
    "/runs/{run_id}": (f"/segment-sync/runs/{RUN}", "runs"),
    "/runs/{run_id}/rejects": (f"/segment-sync/runs/{RUN}/rejects", "personal"),
    "/runs/{run_id}/export/{what}.{fmt}": (f"/segment-sync/runs/{RUN}/export/rejects.csv",
                                           "personal"),
    "/ui/": ("/segment-sync/ui/", "runs"),
    "/ui/runs/{run_id}": (f"/segment-sync/ui/runs/{RUN}", "runs"),
}
# FastAPI's own schema pages: they describe the routes and hold no data.
SCHEMA_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
ROLES = [
    {"name": "SyncReader",
     "permissions": [("can_read", f"DAG:{DAG_ID}"), ("can_read", "DAG Runs")]},
    {"name": "SyncEditor",
     "permissions": [("can_read", f"DAG:{DAG_ID}"), ("can_edit", f"DAG:{DAG_ID}"),
                     ("can_read", "DAG Runs"), ("can_edit", "DAG Runs")]},
    {"name": "OtherReader",
     "permissions": [("can_read", "DAG:other_dag"), ("can_read", "DAG Runs")]},
]
USERS = {"reader": "SyncReader", "editor": "SyncEditor", "outsider": "OtherReader"}
SETUP = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
roles, users = json.loads(sys.argv[1]), json.loads(sys.argv[2])
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    for spec in roles:
        role = sm.find_role(spec["name"]) or sm.add_role(spec["name"])
        for action, resource in spec["permissions"]:
            sm.add_permission_to_role(role, sm.create_permission(action, resource))
    for name, role in users.items():
        sm.add_user(name, name, name, f"{name}@example.com", sm.find_role(role), password=name)
"""


def test_every_route_is_listed():
    paths = {route.path for route in app.routes}
    assert paths - SCHEMA_ROUTES == set(ROUTES)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Airflow's api-server with the FAB auth manager, the seeded audit store, the three
    users, and downloads restricted to who may edit the runs."""
    root = tmp_path_factory.mktemp("history-access")
    url = f"sqlite:///{root / 'audit.db'}"
    staging_root = (root / "staging").as_uri()
    seed(url, staging_root=staging_root)
    port = free_port()
    env = airflow_env(root / "airflow", AIRFLOW__CORE__AUTH_MANAGER=FAB,
                      AIRFLOW__API__PORT=str(port), MOESIF_SEGMENT_PII_ACCESS="edit",
                      MOESIF_SEGMENT_STAGING_ROOT=staging_root, **connection_env(audit_url=url))
    (root / "airflow").mkdir()
    airflow("db", "migrate", env=env)
    airflow("fab-db", "migrate", env=env)
    subprocess.run([sys.executable, "-c", SETUP,
                    json.dumps(ROLES), json.dumps(USERS)], env=env, check=True,
                   capture_output=True, text=True)
    log = (root / "api-server.log").open("w")
    process = subprocess.Popen([AIRFLOW, "api-server", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/api/v2/monitor/health", timeout=5).ok:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((root / "api-server.log").read_text()[-3000:])
            time.sleep(1)
        tokens = {}
        for user in USERS:
            answer = requests.post(f"{base}/auth/token", timeout=30,
                                   json={"username": user, "password": user})
            assert answer.status_code == 201, answer.text
            tokens[user] = answer.json()["access_token"]
        yield base, tokens
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def get(api, user: str, path: str, **params: str) -> requests.Response:
    base, tokens = api
    return requests.get(base + path, params=params, timeout=30,
                        headers={"Authorization": f"Bearer {tokens[user]}"})


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_who_may_use_each_route(api, route):
    path, needs = ROUTES[route]
    assert get(api, "editor", path).status_code == 200
    assert get(api, "reader", path).status_code == (200 if needs == "runs" else 403)
    refused = get(api, "outsider", path)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"you may not read the runs of DAG '{DAG_ID}': ask an Airflow admin for read access "
        "to that DAG's runs")


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_dag_the_user_may_not_read_is_refused_the_same_way(api, route):
    path, _ = ROUTES[route]
    refused = get(api, "editor", path, dag_id="other_dag")
    assert refused.status_code == 403
    assert "you may not read the runs of DAG 'other_dag'" in refused.json()["detail"]


def test_personal_data_needs_edit_access_and_the_page_says_so(api):
    refused = get(api, "reader", ROUTES["/runs/{run_id}/export/{what}.{fmt}"][0])
    assert refused.json()["detail"] == (
        f"downloads hold personal data: they need edit access to the runs of DAG '{DAG_ID}' "
        "(MOESIF_SEGMENT_PII_ACCESS=edit)")
    page = get(api, "reader", f"/segment-sync/ui/runs/{RUN}").text
    assert 'id="no-personal-data"' in page
    assert "x@example.com" not in page and "/export/" not in page  # the raw record, the links
    page = get(api, "editor", f"/segment-sync/ui/runs/{RUN}").text
    assert "x@example.com" in page and "/export/rejects.csv" in page
