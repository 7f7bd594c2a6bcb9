"""The large account the benchmarks serve from disk: ``sandbox.datagen --account``, reused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import REPO, WINDOW


def generate(folder: Path, users: int) -> dict[str, Any]:
    """The account's stand-in store and its expected counts in ``folder`` (``store.sqlite``,
    ``expected.json``); reused when the folder already holds an account of ``users``."""
    expected = folder / "expected.json"
    if expected.exists() and json.loads(expected.read_text())["users"] == users:
        return json.loads(expected.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("store.sqlite", "expected.json"):
        (folder / name).unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "sandbox.datagen", "--account", "--users", str(users),
                    "--seed", "0", "--start", WINDOW.start.isoformat(),
                    "--end", WINDOW.end.isoformat(), "--out", str(folder)],
                   cwd=REPO, check=True)
    return json.loads(expected.read_text())
