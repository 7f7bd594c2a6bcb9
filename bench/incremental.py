"""``python -m bench.incremental --users N``: what an hourly run costs on a large account.

The account is ``sandbox.datagen --account``: N users (N/20 companies) in a
stand-in store on disk, 1% of them changed or seen in the benchmark's window
and 0.12% of the companies changed in it (which brings in about 0.1% of the
users through their company). The audit store holds the state of all N users,
as a previous full sync left it (``bench.state_store.fill``, not timed), so
every lookup and every upsert of the run is against an N-row
``sync_user_state``; each row keeps ``--content`` bytes (default 620: about
what a packed message takes, kept by default for the diff preview), and the
day's purge of old content is done (one run a day pays for it: a read of
every row, 9 s at ten million).

Then the run's four stages, each in a fresh process (``bench.worker``) exactly
as ``bench.run`` times them: ``extract_users``, ``extract_companies``,
``transform`` (the default, one worker process per core once a file has four
chunks) and ``load`` (every shard in turn). Each stage's wall time, CPU
seconds (its own and its worker processes') and peak RSS are reported, with
their sum: what the hour costs. ``--postgres`` puts the audit store in a
throwaway PostgreSQL server instead of SQLite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from moesif_segment_sync.store import AuditStore

from . import account, state_store
from .config import MOESIF_KEY, PAGE_SIZE, REPO, WRITE_KEY, forget_settings_env
from .end_to_end import dags_test
from .process import BenchError, SegmentStandIn, StandIn
from .run import Workspace, machine

RUN_ID = "incremental"


def filled_state(url: str, users: int, cache: Path | None, content_bytes: int) -> float:
    """Fill the audit store at ``url`` with N users' state; a SQLite one is copied from
    ``cache`` when that holds the same N (filling 10M rows takes minutes)."""
    if url.startswith("sqlite") and cache is not None:
        target = Path(url.removeprefix("sqlite:///"))
        if cache.exists():
            shutil.copyfile(cache, target)
            return 0.0
    store = AuditStore(url)
    try:
        seconds = state_store.fill(store, users, content_bytes)
    finally:
        store.close()
    if url.startswith("sqlite") and cache is not None:
        shutil.copyfile(Path(url.removeprefix("sqlite:///")), cache)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.incremental", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--data", type=Path, help="the account's folder (default: under --work;"
                                                  " reused when it holds N users)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--postgres", action="store_true", help="audit store in PostgreSQL")
    parser.add_argument("--content", type=int, default=620, metavar="B",
                        help="bytes of kept content in each user's state row (0: none)")
    parser.add_argument("--dags-test", action="store_true",
                        help="then the same hour through `airflow dags test` (SQLite only), on "
                             "a fresh copy of the N users' state")
    parser.add_argument("--out", type=Path, help="results JSON")
    args = parser.parse_args(argv)
    forget_settings_env()
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    with ExitStack() as stack:
        root = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="mss-incremental-")))
        work = Workspace(root)
        data = args.data or root / "account"
        expected = account.generate(data, args.users)
        say(f"account: {expected}")
        if args.postgres:
            sys.path.insert(0, str(REPO))
            from tests.postgres import postgres_server
            audit_url = stack.enter_context(postgres_server())
            cache = None
        else:
            audit_url = f"sqlite:///{root / 'audit' / f'{RUN_ID}.db'}"
            cache = data / f"state-{args.users}-content-{args.content}.db"
        fill_s = filled_state(audit_url, args.users, cache, args.content)
        say(f"audit store holds {args.users:,} users' state (filled in {fill_s:.0f} s)")
        segment = stack.enter_context(SegmentStandIn(work.logs / "segment.log", WRITE_KEY))
        moesif = stack.enter_context(StandIn("moesif", [
            "--store", str(data / "store.sqlite"), "--key", MOESIF_KEY],
            work.logs / "moesif.log"))
        settings = {"page_size": PAGE_SIZE}
        stages: dict[str, Any] = {}
        for name in ("extract_users", "extract_companies", "transform", "load"):
            extra: dict[str, Any] = {"settings": settings}
            if name.startswith("extract"):
                extra["moesif_url"] = moesif.url
            if name == "load":
                extra.update(segment_url=segment.url, shards=stages["transform"]["summary"],
                             settings={"send_rate": None})
            moesif_cpu = moesif.cpu_seconds()
            result = work.stage(name, RUN_ID, audit_url=audit_url, **extra)
            stages[name] = {**result.figures(), "summary": result.summary,
                            "stand_in_cpu_seconds": round(moesif.cpu_seconds() - moesif_cpu, 3)}
            say(f"{name}: {result.seconds:.2f} s, {result.cpu_seconds:.2f} s CPU "
                f"(+{result.children_cpu_seconds:.2f} s in worker processes), peak RSS "
                f"{result.peak_rss_mb:,.0f} MB")
        built = stages["transform"]["summary"][0]
        loaded = stages["load"]["summary"]
        received = segment.stats()
        if received["delivered"] != loaded["sent"] or loaded["sent"] != built["messages"]:
            raise BenchError(f"the run did not deliver its messages: built {built['messages']},"
                             f" sent {loaded['sent']}, stand-in {received}")
        stages["transform"]["summary"] = built
        results = {
            "n_users": args.users, "account": expected, "content_bytes": args.content,
            "audit_store": audit_url.split(":")[0],
            "considered": built["considered"], "sent": loaded["sent"],
            "rejected": built["rejected"], "stages": stages,
            "seconds": round(sum(stage["seconds"] for stage in stages.values()), 2),
            "cpu_seconds": round(sum(stage["cpu_seconds"] + stage["children_cpu_seconds"]
                                     for stage in stages.values()), 2),
            "peak_rss_mb": max(stage["peak_rss_mb"] + stage["children_peak_rss_mb"]
                               for stage in stages.values()),
            "state_store_mb": _store_size(audit_url),
            "machine": machine()}
        say(f"the hour: {results['considered']:,} users considered, {results['sent']:,} sent, "
            f"{results['seconds']} s over the four stages, {results['cpu_seconds']} CPU s, "
            f"largest task {results['peak_rss_mb']:,.0f} MB")
        if args.dags_test and cache is not None:
            home = root / "airflow"
            home.mkdir(exist_ok=True)
            shutil.copyfile(cache, home / "moesif_segment_audit.db")
            results["end_to_end"] = dags_test(home, work.logs / "dags-test.log", moesif, segment,
                                              expected_messages=loaded["sent"])
            say(f"airflow dags test: {results['end_to_end']['seconds']:.1f} s "
                f"({results['end_to_end']['task_seconds']})")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _store_size(url: str) -> float | None:
    if not url.startswith("sqlite"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
