"""Child processes: the stand-ins, and commands whose time and peak memory are measured."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import requests

from .config import REPO, clean_env


class BenchError(RuntimeError):
    """The benchmark cannot give trustworthy figures; the message says why."""


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float  # wall clock, process start to exit
    peak_rss_mb: float  # the child's ru_maxrss


def run_measured(command: list[str], *, env: dict[str, str], log: Path) -> Measured:
    """Run ``command`` to its end, its output to ``log``, and read its own peak RSS.

    ``os.wait4`` returns the rusage of exactly this child (and whatever it
    waited for), so each stage's peak is its own and not the high-water mark
    of an earlier stage, as ``RUSAGE_CHILDREN`` would give.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Measured(process.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024)


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return "(no log)"


class StandIn:
    """A stand-in served by ``python -m sandbox.<module>`` in a process of its own.

    In-process, a stand-in's server threads would share the GIL with the
    stage being measured and slow it down; in its own process it has the
    other core. Use as a context manager.
    """

    def __init__(self, module: str, args: list[str], log: Path) -> None:
        self.command = [sys.executable, "-m", f"sandbox.{module}", *args]
        self.log = log
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self.startup_s = 0.0

    def __enter__(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("w") as errors:
            self._process = subprocess.Popen(self.command, cwd=REPO, env=clean_env(),
                                              stdout=subprocess.PIPE, stderr=errors, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # blocks until READY or the process ends
        if not line.startswith("READY "):
            self.__exit__()
            raise BenchError(f"{' '.join(self.command[2:4])} did not start:\n{log_tail(self.log)}")
        self.url = line.split()[1]
        self.startup_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class SegmentStandIn(StandIn):
    """The Segment stand-in, read and reset through its ``/_sandbox/`` control routes."""

    def __init__(self, log: Path, write_key: str) -> None:
        super().__init__("segment", ["--write-key", write_key], log)
        self._http = requests.Session()

    def _control(self, method: str, route: str) -> Any:
        response = self._http.request(method, f"{self.url}/_sandbox/{route}", timeout=600)
        response.raise_for_status()
        return response

    def stats(self) -> dict[str, int]:
        return self._control("GET", "stats").json()

    def clear(self) -> None:
        self._control("POST", "clear")

    def requests(self) -> list[dict[str, Any]]:
        """The request log: one entry per batch, with its arrival time and message count."""
        return self._control("GET", "requests").json()

    def delivered_body(self) -> bytes:
        """Every delivered message as one JSON array (first copy of each messageId)."""
        return self._control("GET", "delivered").content
