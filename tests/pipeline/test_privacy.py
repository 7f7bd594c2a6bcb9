"""Personal data: named fields hashed before staging, traits limited by allow and deny lists."""

from __future__ import annotations

import gzip
import hashlib

import orjson
import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.settings import Endpoint, load_settings
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.support import WINDOW

IN_WINDOW, BEFORE = "2026-11-25T00:10:00Z", "2026-11-20T00:00:00Z"
USER = {"user_id": "u1", "email": " Ada@Example.com ", "name": "Ada",
        "metadata": {"email": "ada@meta.example", "plan": "pro"},
        "modified_time": IN_WINDOW, "campaign": {"utm_source": "google"}}
# Rejected (over 32 KB), so its raw record lands in the run's rejects and the audit store.
OVERSIZE = {"user_id": "u2", "email": "Bob@Example.com",
            "metadata": {"email": "bob@meta.example", "blob": "x" * 40_000},
            "modified_time": IN_WINDOW}
CLEAR = (b"Ada@Example.com", b"ada@meta.example", b"Bob@Example.com", b"bob@meta.example")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run_sync(tmp_path, users=(USER,), companies=(), params: RunParams | None = None,
             **settings: object) -> tuple[dict[str, dict], Run]:
    """Extract, transform, load and audit one run; what Segment received by userId."""
    run = Run("moesif_to_segment", "manual__1", "manual", WINDOW, params or RunParams(),
              load_settings(max_rejected_share=1.0, **settings), tmp_path.as_uri(),
              f"sqlite:///{tmp_path / 'a.db'}")
    with MoesifStandIn(list(users), list(companies), api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment:
        extracted_users = sync.extract_users(run, Endpoint(moesif.url, "mk"))
        extracted_companies = sync.extract_companies(run, Endpoint(moesif.url, "mk"))
        shards = sync.transform(run)
        loads = [sync.load(run, Endpoint(segment.url, "wk"), shard) for shard in shards]
        sync.audit(run, extracted_users, extracted_companies, shards, loads)
        delivered = {m["userId"]: m for m in segment.delivered.values()}
    return delivered, run


def as_member_of_a_changed_company(user: dict) -> dict:
    return {**user, "company_id": "cmp_c", "modified_time": BEFORE, "last_seen_time": BEFORE}


CHANGED_COMPANY = {"company_id": "cmp_c", "metadata": {"name": "C"}, "modified_time": IN_WINDOW}
ROUTES = {
    # route: (users, companies, params, the extract count the users come in by)
    "window": ([USER, OVERSIZE], [], RunParams(), "users_in_window"),
    "changed_company": ([as_member_of_a_changed_company(u) for u in (USER, OVERSIZE)],
                        [CHANGED_COMPANY], RunParams(), "users_via_company"),
    "full_refresh": ([{**u, "modified_time": BEFORE} for u in (USER, OVERSIZE)], [],
                     RunParams(full_refresh=True), "users_in_window"),
}


@pytest.mark.parametrize("route", ROUTES)
def test_hashed_fields_never_reach_staging_rejects_the_store_or_segment(tmp_path, route):
    users, companies, params, count = ROUTES[route]
    delivered, run = run_sync(tmp_path, users, companies, params, hash_fields=["email"])

    record = run.audit_store().latest_runs("moesif_to_segment", limit=1)[0]
    assert record["counts"][count] == 2, "the users came by another route than the one tested"
    assert delivered["u1"]["traits"]["email"] == digest("Ada@Example.com")
    assert delivered["u1"]["traits"]["metadata"]["email"] == digest("ada@meta.example")
    [reject] = run.audit_store().rejects(run.key)
    raw = orjson.loads(reject["raw_record"])
    assert (reject["entity_id"], reject["kind"]) == ("u2", "oversize")
    assert raw["email"] == digest("Bob@Example.com")
    assert raw["metadata"]["email"] == digest("bob@meta.example")
    staged = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".gz") for path in staged)
    for path in staged:  # staged files, audit.json, and the audit store's SQLite files
        content = path.read_bytes()
        if path.name.endswith(".gz"):
            content = gzip.decompress(content)
        assert not any(clear in content for clear in CLEAR), path.name
    assert not any(clear in orjson.dumps(list(delivered.values())) for clear in CLEAR)


def test_deny_drops_traits_and_allow_keeps_only_those(tmp_path):
    denied, _ = run_sync(tmp_path / "deny", trait_deny=["email", "metadata"])
    allowed, _ = run_sync(tmp_path / "allow", trait_allow=["name"])

    assert set(denied["u1"]["traits"]) == {"id", "modifiedTime", "name", "campaign"}
    assert allowed["u1"]["traits"] == {"id": "u1", "name": "Ada"}


def test_without_settings_everything_is_sent_in_clear(tmp_path):
    delivered, run = run_sync(tmp_path)
    assert delivered["u1"]["traits"]["email"] == "Ada@Example.com"
    raw = orjson.loads(next(run.staging().lines(staging.USERS)))
    assert raw["_source"]["email"] == " Ada@Example.com "
