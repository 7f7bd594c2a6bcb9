"""Child processes: the stand-ins, and commands whose time and peak memory are measured."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psutil
import requests

from .config import REPO


class BenchError(RuntimeError):
    """The benchmark cannot give trustworthy figures; the message says why."""


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float  # wall clock, process start to exit
    peak_rss_mb: float  # the largest VmHWM seen in the process or any descendant


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's own high-water RSS (``VmHWM``), in MB.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a
    child across fork and exec, so after the benchmark's parent has held a
    large delivery check, every child would report at least that much.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_measured(command: list[str], *, log: Path, env: dict[str, str] | None = None,
                 poll_s: float = 0.2) -> Measured:
    """Run ``command`` to its end, its output to ``log``, sampling its peak RSS as it runs.

    The peak is sampled from ``/proc`` every ``poll_s`` for the process and
    its descendants (a task runner may fork), so growth in the last moments
    before an exit can be missed; the stage workers also report their own.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = 0.0
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        tree = psutil.Process(process.pid)
        while process.poll() is None:
            for member in [tree, *_descendants(tree)]:
                try:
                    peak = max(peak, peak_rss_mb(member.pid))
                except (FileNotFoundError, ProcessLookupError):
                    pass  # ended between the listing and the read
            try:
                process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
    return Measured(process.returncode, time.perf_counter() - started, peak)


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


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
            self._process = subprocess.Popen(self.command, cwd=REPO, stdout=subprocess.PIPE,
                                              stderr=errors, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # blocks until READY or the process ends
        if not line.startswith("READY "):
            self.__exit__()
            raise BenchError(f"{' '.join(self.command[2:4])} did not start:\n{log_tail(self.log)}")
        self.url = line.split()[1]
        self.startup_s = time.perf_counter() - started
        return self

    def cpu_seconds(self) -> float:
        """CPU time the stand-in has used so far: over a stage's seconds, how busy it was."""
        assert self._process is not None
        times = psutil.Process(self._process.pid).cpu_times()
        return times.user + times.system

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

    def __init__(self, log: Path, write_key: str, *, keep_messages: bool = True) -> None:
        super().__init__("segment", ["--write-key", write_key,
                                     *([] if keep_messages else ["--ids-only"])], log)
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
