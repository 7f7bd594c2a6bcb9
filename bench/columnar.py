"""``python -m bench.columnar --users N``: the transform on a columnar engine, against today's.

Issue 21 asked for the join and the message build prototyped on an embedded
columnar engine and measured against the transform as it is. This is that
prototype, on DuckDB (which reads gzip JSON lines itself), one thread:

- DuckDB reads the staged users and companies files (``read_json`` of the
  hits, ``_source`` kept as JSON), numbers the users in file order, joins each
  user's company (``company_traits``, mapped once per company in Python, handed
  to DuckDB as a table) and marks repeated user ids, in one query;
- the message itself is built in Python, per row, by ``mapping.identify``: the
  contract's messageId is a SHA-256 of canonical JSON with every key sorted at
  every depth, pass-through objects included, which no SQL function writes, and
  the messages must stay byte-identical. Repeats are found in the same pass:
  DuckDB flags the ids it sees more than once and Python keeps only those.

It stages nothing; it returns the messages' bytes and the rejects' kinds in
order, so that ``compare`` can check them against the staged output of
``pipeline.transform`` on the same files, byte for byte. Records DuckDB's
reader refuses or would rewrite (NaN, integers past 64 bits, nesting deeper
than its limit) would need the Python path as a fallback; the benchmark's data
has none, and the prototype stops with an error if it meets one.

Run ``python -m bench.columnar --users 100000`` (needs ``duckdb``, a
benchmark-only requirement): it generates the data, stages it as an extract
would, times today's transform in one process and the prototype on one
thread, each in a fresh process, and compares their output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.pipeline.mapping import Identify, company_traits, identify
from moesif_segment_sync.pipeline.staging import Staging

from .config import DAG_ID, REPO, WINDOW

RUN_ID = "columnar"


def columnar_messages(stage: Staging, *, default_timestamp: str) -> tuple[list[bytes],
                                                                         list[str]]:
    """The messages (bytes, in order) and the reject kinds (in order) of the staged users."""
    import duckdb
    import pandas as pd

    db = duckdb.connect()
    db.execute("SET threads = 1")
    warnings: Counter = Counter()
    traits: dict[str, str] = {}
    for name in (staging.COMPANIES, staging.USER_COMPANIES):
        if not Path(stage.path(name)).exists():
            continue
        for source, in db.execute(f"SELECT _source FROM {_read(stage.path(name))}").fetchall():
            record = orjson.loads(source)
            mapped = company_traits(record, warnings)
            if isinstance(mapped, dict) and mapped["id"] not in traits:
                traits[mapped["id"]] = orjson.dumps(mapped).decode()
    db.register("companies", pd.DataFrame({"company_id": list(traits),
                                           "traits": list(traits.values())}))
    files = [stage.path(name) for name in (staging.USERS, staging.USERS_VIA_COMPANY)
             if Path(stage.path(name)).exists()]
    cursor = db.execute(f"""
        WITH users AS (
            SELECT row_number() OVER () AS n, _source,
                   json_extract_string(_source, '$.company_id') AS company_id,
                   json_extract_string(_source, '$.user_id') AS user_id
            FROM {_read(files)})
        SELECT u._source, c.traits,
               u.user_id IS NOT NULL AND count(*) OVER (PARTITION BY u.user_id) > 1 AS shared
        FROM users u LEFT JOIN companies c ON c.company_id = u.company_id
        ORDER BY u.n""")
    messages: list[bytes] = []
    kinds: list[str] = []
    built: set[str] = set()  # only the ids DuckDB saw more than once: a repeat is rare
    for source, company, shared in _rows(cursor):
        outcome = identify(orjson.loads(source), orjson.loads(company) if company else None,
                           default_timestamp=default_timestamp, warnings=warnings)
        if not isinstance(outcome, Identify):
            kinds.append(outcome.kind.value)
        elif shared and outcome.user_id in built:
            kinds.append("duplicate")  # as the transform: a user built earlier is sent once
        else:
            if shared:
                built.add(outcome.user_id)
            messages.append(outcome.body)
    return messages, kinds


def _rows(cursor: Any) -> Any:
    """The query's rows, fetched 10,000 at a time (DuckDB keeps the sorted result)."""
    while rows := cursor.fetchmany(10_000):
        yield from rows


def _read(paths: str | list[str]) -> str:
    listed = ", ".join(f"'{path}'" for path in ([paths] if isinstance(paths, str) else paths))
    return (f"read_json([{listed}], format = 'newline_delimited', compression = 'gzip', "
            "columns = {'_source': 'JSON'}, maximum_object_size = 67108864)")


def staged_output(stage: Staging, shards: int) -> tuple[list[bytes], list[str]]:
    """What ``pipeline.transform`` staged: its messages in order, and its users' reject kinds."""
    messages = [line for shard in range(shards)
                for line in stage.lines(staging.messages_file(shard))]
    kinds = [reject["kind"] for reject in map(orjson.loads, stage.lines(staging.REJECTS))
             if reject["entity"] == "user"]
    return messages, kinds


def stage_dataset(data: Path, stage: Staging) -> None:
    """The generated users and companies as an extract stages them (hits with ``_source``)."""
    for source, name, id_field in (("users.jsonl", staging.USERS, "user_id"),
                                   ("companies.jsonl", staging.COMPANIES, "company_id")):
        with (data / source).open("rb") as lines, stage.writer(name) as out:
            for number, line in enumerate(lines):
                record = orjson.loads(line)
                doc_id = record.get(id_field) if isinstance(record, dict) else None
                hit = {"_id": doc_id if isinstance(doc_id, str) else f"_doc{number}",
                       "_source": record}
                out.write_line(orjson.dumps(hit))
    with stage.writer(staging.USERS_VIA_COMPANY), stage.writer(staging.USER_COMPANIES):
        pass


def _timed(mode: str, root: str) -> dict[str, Any]:
    """One implementation in this process, timed around the call."""
    from moesif_segment_sync.codec import format_utc
    from moesif_segment_sync.pipeline.transform import transform

    from .process import peak_rss_mb

    stage = Staging(root, DAG_ID, RUN_ID)
    default_timestamp = format_utc(WINDOW.end)
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "today":
        built = transform(stage, default_timestamp=default_timestamp, chunk_size=5000,
                          shard_size=100_000, workers=1)
        result: dict[str, Any] = {"considered": built.considered, "shards": built.shards}
    else:
        messages, kinds = columnar_messages(stage, default_timestamp=default_timestamp)
        result = {"considered": len(messages) + len(kinds), "messages": len(messages)}
    return {**result, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.columnar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--run", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(_timed(*args.run)))
        return 0
    with tempfile.TemporaryDirectory(prefix="mss-columnar-") as folder:
        data = Path(folder) / "data"
        subprocess.run([sys.executable, "-m", "sandbox.datagen", "--users", str(args.users),
                        "--seed", "0", "--start", WINDOW.start.isoformat(), "--end",
                        WINDOW.end.isoformat(), "--out", str(data)], cwd=REPO, check=True,
                       capture_output=True)
        root = (Path(folder) / "staging").as_uri()
        stage = Staging(root, DAG_ID, RUN_ID)
        stage_dataset(data, stage)
        runs: dict[str, list[dict[str, Any]]] = {"today": [], "columnar": []}
        for _ in range(args.rounds):
            for mode in runs:
                done = subprocess.run([sys.executable, "-m", "bench.columnar", "--run", mode,
                                       root], cwd=REPO, check=True, capture_output=True,
                                      text=True)
                runs[mode].append(json.loads(done.stdout.splitlines()[-1]))
                print(mode, runs[mode][-1], flush=True)
        shards = runs["today"][0]["shards"]
        ours = staged_output(stage, shards)
        theirs = columnar_messages(stage, default_timestamp=_end())
        identical = ours == theirs
    summary = {"n_users": args.users, "identical": identical, "messages": len(ours[0]),
               "rejects": dict(Counter(ours[1])), "runs": runs,
               "median_cpu_seconds": {mode: sorted(r["cpu_seconds"] for r in rs)[len(rs) // 2]
                                      for mode, rs in runs.items()}}
    summary["users_per_cpu_s"] = {mode: round(args.users / seconds)
                                  for mode, seconds in summary["median_cpu_seconds"].items()}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if identical else 1


def _end() -> str:
    from moesif_segment_sync.codec import format_utc
    return format_utc(WINDOW.end)


if __name__ == "__main__":
    sys.exit(main())
