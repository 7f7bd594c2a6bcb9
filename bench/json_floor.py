"""``python -m bench.json_floor``: what JSON alone costs a user in CPython, the transform's floor.

The transform must at least parse each staged user and write its message twice: the
canonical form (every key sorted) that the messageId's SHA-256 is taken over, and the body.
This times exactly that on generated users (``sandbox.datagen``, seed 0), with orjson and
hashlib, in this process on one core, and prints users per CPU second (the best of
``--repeat`` passes); no mapping, no staging, no compression.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from sandbox.datagen import generate


def _parse(line: bytes) -> object:
    return orjson.loads(line)


def _parse_and_sorted_dump(line: bytes) -> object:
    return orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)


def _message_floor(line: bytes) -> object:
    record = orjson.loads(line)
    hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return orjson.dumps(record)


STEPS: dict[str, Callable[[bytes], object]] = {
    "parse": _parse,
    "parse + sorted dump": _parse_and_sorted_dump,
    "parse + sorted dump + SHA-256 + dump": _message_floor,
}


def users_per_cpu_second(lines: list[bytes], step: Callable[[bytes], object],
                         repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.process_time()
        for line in lines:
            step(line)
        best = max(best, len(lines) / (time.process_time() - started))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.json_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    data = generate(args.users, seed=0, start=datetime(2026, 11, 25, tzinfo=UTC),
                    end=datetime(2026, 11, 25, 1, tzinfo=UTC))
    lines = [orjson.dumps(user) for user in data.users]
    print(f"{len(lines):,} users, {sum(map(len, lines)) / len(lines):,.0f} bytes each on average")
    for name, step in STEPS.items():
        print(f"{name}: {users_per_cpu_second(lines, step, args.repeat):,.0f} users per CPU "
              f"second (best of {args.repeat})")


if __name__ == "__main__":
    main()
