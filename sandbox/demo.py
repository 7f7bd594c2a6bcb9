"""`make demo`: one run of the DAG on the embedded default, against the local stand-ins.

Generates a few thousand users (some of them deliberately bad), serves them
from the Moesif stand-in, runs `airflow dags test` for one hourly window, and
prints what the run did, read back from the audit store and the staged files.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import orjson

from moesif_segment_sync.pipeline.staging import Staging, messages_file
from moesif_segment_sync.store.audit import AuditStore, RunKey

from .environment import (
    DEMO_WINDOW,
    REPO,
    airflow,
    airflow_env,
    connection_env,
    demo_dataset,
    prepare_airflow,
    stand_ins,
)

HOME = REPO / ".demo"
DAG_ID = "moesif_to_segment"


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    dataset = demo_dataset()
    print(f"Generated {len(dataset.users):,} users and {len(dataset.companies):,} companies "
          f"({len(dataset.expected_rejects)} deliberately bad).")
    env = airflow_env(HOME)
    prepare_airflow(env)
    with stand_ins(dataset) as (moesif, segment):
        print(f"Moesif stand-in at {moesif.url}, Segment stand-in at {segment.url}.")
        env.update(connection_env(moesif.url, segment.url))
        log = HOME / "dags-test.log"
        # `dags test` with a logical date runs the interval that ends at it.
        print(f"Running `airflow dags test {DAG_ID}` for [{DEMO_WINDOW[0]:%Y-%m-%d %H:%M}, "
              f"{DEMO_WINDOW[1]:%H:%M}) UTC (log: {log.relative_to(REPO)}) ...")
        result = airflow("dags", "test", DAG_ID, DEMO_WINDOW[1].isoformat(), env=env, log=log,
                         check=False)
        received = len(segment.delivered)
    if result.returncode != 0:
        print("".join(log.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
        print(f"The DAG run failed; the whole log is {log}.", file=sys.stderr)
        return 1
    store = AuditStore(f"sqlite:///{HOME / 'moesif_segment_audit.db'}")
    run = store.latest_runs(DAG_ID, limit=1)[0]
    rejects = store.rejects(RunKey(DAG_ID, run["run_id"]))
    store.close()
    report(run, rejects, received, env["MOESIF_SEGMENT_STAGING_ROOT"])
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s; the stand-ins are stopped.")
    return 0


def report(run: dict, rejects: list[dict], received: int, staging_root: str) -> None:
    counts = run["counts"]
    folder = run["staging"].removeprefix("file://")
    audit = f"sqlite:///{HOME / 'moesif_segment_audit.db'}"
    print(f"""
Run {run['run_id']} ({run['mode']}): {run['status']}
  window      [{run['window_start']:%Y-%m-%dT%H:%M:%SZ}, {run['window_end']:%Y-%m-%dT%H:%M:%SZ})
  considered  {run['considered']:>6,}  ({counts['routes'].get('window', 0):,} changed or seen \
in the window, {counts['routes'].get('company', 0):,} through a changed company)
  sent        {run['sent']:>6,}  (the Segment stand-in received {received:,})
  unchanged   {run['unchanged']:>6,}
  rejected    {run['rejected']:>6,}  {_by_kind(counts['rejected_by_kind'])}
  batches     {run['batches']:>6,}
  warnings    {_by_kind(counts['warnings']) or 'none'}

Staged files   {run['staging']}
  (inspect:    zcat {folder}/messages-00000.jsonl.gz | head -1 | python -m json.tool)
Audit store    {audit}
  (tables sync_runs, sync_batches, sync_rejects, sync_user_state;
   or: .venv/bin/python -m moesif_segment_sync --url {audit} audit runs)""")
    print("\nFirst rejects:")
    for reject in rejects[:3]:
        print(f"  {reject['entity_id']!r:>14}  {reject['kind']:<12} {reject['reason']}")
    stage = Staging(staging_root, run["dag_id"], run["run_id"])
    print("\nExample identify messages:")
    for line in _examples(stage):
        print(json.dumps(orjson.loads(line), indent=2, ensure_ascii=False))


def _examples(stage: Staging) -> list[bytes]:
    """Two messages: one with a company and a campaign, one without a company."""
    picked: dict[str, bytes] = {}
    for line in stage.lines(messages_file(0)):
        traits = orjson.loads(line)["traits"]
        kind = "company" if "company" in traits and "campaign" in traits else (
            "no company" if "company" not in traits else None)
        if kind and kind not in picked and len(line) < 1200:
            picked[kind] = line
        if len(picked) == 2:
            break
    return list(picked.values())


def _by_kind(counts: dict) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in counts.items())


if __name__ == "__main__":
    sys.exit(main())
