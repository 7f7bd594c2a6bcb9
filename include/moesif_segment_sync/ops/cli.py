"""``python -m moesif_segment_sync``: the run history on the command line.

    python -m moesif_segment_sync audit runs [--since DATE] [--until DATE] [--status S]
                                             [--mode M] [--limit N] [--format table|json|csv]
    python -m moesif_segment_sync audit show RUN_ID [--format table|json]
    python -m moesif_segment_sync audit rejects RUN_ID [--limit N] [--format table|json|csv]
    python -m moesif_segment_sync doctor [--send-test] [--budget N] [--format text|json]
    python -m moesif_segment_sync retry-rejects RUN_ID

``retry-rejects`` triggers a run of the DAG (``airflow dags trigger``) whose param
``retry_rejects_of`` is RUN_ID: it reads the users that run rejected from Moesif again and
sends them through today's mapping. Run it where the ``airflow`` command works, once the
cause of the rejects is fixed.

The store is ``--url``, else ``$MOESIF_SEGMENT_AUDIT_URL``, else the DAG's
own (the Airflow connection ``moesif_segment_audit``, or SQLite under
``AIRFLOW_HOME``). ``doctor`` needs no store: it checks the connections
``moesif_default`` and ``segment_default`` against the real APIs
(``doctor.py``) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from ..errors import ConfigError, SyncError
from ..store import AuditStore, RunKey, history
from ..window import parse_moment

DAG_ID = "moesif_to_segment"


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    if args.area == "doctor":
        return _doctor(args, out)
    if args.area == "retry-rejects":
        return _retry_rejects(args, out)
    try:
        store = AuditStore(args.url or _default_url())
        try:
            args.command(args, store, out)
        finally:
            store.close()
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _default_url() -> str:
    if os.environ.get("MOESIF_SEGMENT_AUDIT_URL"):
        return os.environ["MOESIF_SEGMENT_AUDIT_URL"]
    from ..airflow.context import audit_url  # the DAG's own store; imports Airflow

    return audit_url()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moesif_segment_sync",
                                     description="The Moesif to Segment sync's run history.")
    parser.add_argument("--url", help="SQLAlchemy URL of the audit store")
    parser.add_argument("--dag-id", default=DAG_ID)
    commands = parser.add_subparsers(dest="area", required=True)
    audit = commands.add_parser("audit", help="runs, one run, its rejects")
    verbs = audit.add_subparsers(dest="verb", required=True)

    runs = verbs.add_parser("runs", help="runs, the last started first")
    runs.add_argument("--since", help="windows starting at or after this ISO date/datetime")
    runs.add_argument("--until", help="windows starting before this ISO date/datetime")
    runs.add_argument("--status", choices=history.STATUSES)
    runs.add_argument("--mode", choices=history.MODES)
    runs.add_argument("--sort", choices=history.SORTS, default="started",
                      help="the last started first (default), or the newest window first")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--format", choices=("table", "json", "csv"), default="table")
    runs.set_defaults(command=_runs)

    show = verbs.add_parser("show", help="one run: counts, timings, the batch ledger")
    show.add_argument("run_id")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(command=_show)

    rejects = verbs.add_parser("rejects", help="one run's rejects with reasons")
    rejects.add_argument("run_id")
    rejects.add_argument("--limit", type=int, default=1000)
    rejects.add_argument("--format", choices=("table", "json", "csv"), default="table")
    rejects.set_defaults(command=_rejects)

    doctor = commands.add_parser(
        "doctor", help="check the Moesif and Segment connections against the real accounts",
        description="Checks moesif_default and segment_default as the DAG reads them: the key "
        "and its scopes, the account's fields against the mapping, the page size, and the "
        "Segment host's region. Exits 1 when a check fails.")
    doctor.add_argument("--send-test", action="store_true",
                        help="POST one empty batch to Segment's /v1/batch (changes nothing)")
    doctor.add_argument("--budget", type=_positive, default=None,
                        help="most requests to Moesif (default: MOESIF_SEGMENT_DOCTOR_BUDGET, 20)")
    doctor.add_argument("--format", choices=("text", "json"), default="text")
    retry = commands.add_parser(
        "retry-rejects", help="trigger a run that sends a run's rejects again",
        description="Triggers a run of the DAG with the param retry_rejects_of: the users the "
        "given run rejected are read from Moesif again and sent through today's mapping.")
    retry.add_argument("run_id")
    return parser


def _retry_rejects(args: argparse.Namespace, out: TextIO) -> int:
    """``airflow dags trigger`` with ``retry_rejects_of``, after checking the run has rejects."""
    store = AuditStore(args.url or _default_url())
    try:
        key = RunKey(args.dag_id, args.run_id)
        if store.run(key) is None:
            print(f"error: no run {args.run_id!r} of {args.dag_id} in {store.url}",
                  file=sys.stderr)
            return 2
        users = store.rejected_user_ids(key)
    finally:
        store.close()
    if not users:
        print(f"error: run {args.run_id!r} rejected no user with an id: nothing to retry",
              file=sys.stderr)
        return 2
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    done = subprocess.run([airflow, "dags", "trigger", args.dag_id, "--conf",
                           json.dumps({"retry_rejects_of": args.run_id})],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"error: airflow dags trigger failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return 2
    out.write(f"triggered a run of {args.dag_id} retrying the {len(users):,} rejected "
              f"user(s) of {args.run_id}\n{done.stdout}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    from ..airflow.context import moesif_endpoint, segment_endpoint  # the DAG's own connections
    from . import doctor

    report = doctor.run(resolve_moesif=moesif_endpoint, resolve_segment=segment_endpoint,
                        send_test=args.send_test, budget=args.budget)
    out.write(doctor.render_json(report) if args.format == "json" else doctor.render_text(report))
    return 1 if report.failed else 0


def _runs(args: argparse.Namespace, store: AuditStore, out: TextIO) -> None:
    try:
        since, until = parse_moment(args.since, "since"), parse_moment(args.until, "until")
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("param", "option")) from None
    page = history.list_runs(store, args.dag_id, since=since, until=until, status=args.status,
                             mode=args.mode, sort=args.sort, limit=args.limit)
    _emit(out, args.format, page.runs, history.RUN_COLUMNS, table_columns=[
        "run_id", "mode", "status", "failed_task", "started_at", "window_start", "considered",
        "sent", "would_send", "unchanged", "rejected", "batches", "duration_s"])


def _show(args: argparse.Namespace, store: AuditStore, out: TextIO) -> None:
    detail = history.run_detail(store, RunKey(args.dag_id, args.run_id))
    if detail is None:
        raise SyncError(f"no run {args.run_id!r} of {args.dag_id} in the audit store")
    if args.format == "json":
        out.write(detail.model_dump_json(indent=2) + "\n")
        return
    data = detail.model_dump(mode="json")
    fields = ["run_id", "mode", "status", "window_start", "window_end", "window_source",
              "dry_run", "considered", "sent", "would_send", "unchanged", "rejected", "batches",
              "duration_s", "staging", "failed_task", "error"]
    counts = ["routes", "rejected_by_kind", "warnings"]
    width = max(map(len, fields + counts))
    for name in fields:
        out.write(f"{name:<{width}}  {_text(data[name])}\n")
    out.write(f"{'params':<{width}}  {json.dumps(data['params'], sort_keys=True)}\n")
    out.write(f"{'timings':<{width}}  {json.dumps(data['timings'], sort_keys=True)}\n")
    for name in counts:
        out.write(f"{name:<{width}}  {json.dumps(data['counts'].get(name, {}), sort_keys=True)}\n")
    for note in data["notes"]:
        out.write(f"{'note':<{width}}  {note}\n")
    out.write("\nledger\n")
    _table(out, data["ledger"],
           ["shard", "batch_no", "status", "messages", "bytes", "attempts", "error"])


def _rejects(args: argparse.Namespace, store: AuditStore, out: TextIO) -> None:
    page = history.list_rejects(store, RunKey(args.dag_id, args.run_id), limit=args.limit)
    _emit(out, args.format, page.rejects, history.REJECT_COLUMNS,
          table_columns=["seq", "entity", "entity_id", "kind", "reason"])


def _emit(out: TextIO, fmt: str, rows: list, columns: list[str], *,
          table_columns: list[str]) -> None:
    if fmt == "json":
        out.write(json.dumps([row.model_dump(mode="json") for row in rows], indent=2,
                             ensure_ascii=False) + "\n")
    elif fmt == "csv":
        out.writelines(history.to_csv(rows, columns))
    else:
        _table(out, [row.model_dump(mode="json") for row in rows], table_columns)


def _table(out: TextIO, rows: Iterable[dict], columns: list[str]) -> None:
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(row[i]) for row in cells])
              for i, column in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _text(value: object) -> str:
    return "" if value is None else str(value)
