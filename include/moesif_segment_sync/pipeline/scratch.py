"""The transform's lookup tables, on disk: companies by id, and the user ids already built.

Both grow with the run (a company per twenty users, say, and every user), so
they live in temporary SQLite databases instead of in memory: the transform
takes the same memory at a million users as at a hundred thousand. The
companies are a file in a temporary folder, which the transform's worker
processes open read-only; the user ids are SQLite's private temporary
database, which it deletes when the connection closes.

Ids are stored as UTF-8 bytes (``surrogatepass``): a lone surrogate, which
the lenient JSON parser lets through, is a valid key here too.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from ..chunking import chunks
from ..errors import ScratchError

# Under SQLite's default limit of 32,766 variables per statement.
_IDS_PER_QUERY = 5000


class Scratch:
    """Companies (first staged wins) and the set of user ids seen, for one transform."""

    def __init__(self) -> None:
        with _clear_errors():
            self._folder = tempfile.TemporaryDirectory(prefix="moesif-segment-sync-")
            self.companies_path = os.path.join(self._folder.name, "companies.sqlite")
            # Nothing here is worth keeping after a crash: no journal and no fsync.
            self._companies = sqlite3.connect(self.companies_path, isolation_level=None)
            self._companies.executescript("""
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                CREATE TABLE companies (id BLOB PRIMARY KEY, traits BLOB NOT NULL,
                                        lenient INTEGER NOT NULL) WITHOUT ROWID;
            """)
            self._users = sqlite3.connect("", isolation_level=None)  # "": private, temporary
            self._users.executescript("""
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                CREATE TABLE users (id BLOB PRIMARY KEY) WITHOUT ROWID;
            """)
        self.companies = 0

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._users.close()
        self._companies.close()
        self._folder.cleanup()

    def add_companies(self, rows: Iterable[tuple[str, bytes, bool]]) -> None:
        """(company_id, traits as a staged JSON line, lenient); an id already held is kept."""
        with _clear_errors(), closing(self._companies.cursor()) as cursor:
            cursor.execute("BEGIN")
            cursor.executemany("INSERT OR IGNORE INTO companies VALUES (?, ?, ?)",
                               ((_key(id_), traits, lenient) for id_, traits, lenient in rows))
            cursor.execute("COMMIT")
            self.companies = cursor.execute("SELECT count(*) FROM companies").fetchone()[0]

    def company_lines(self, ids: Iterable[str]) -> Iterator[tuple[str, bytes, bool]]:
        """(company_id, traits line, lenient) for each of ``ids`` the table holds."""
        return _company_lines(self._companies, ids)

    def built_before(self, user_ids: Iterable[object]) -> set[str]:
        """The ids among ``user_ids`` that an earlier chunk built (see ``record_built``)."""
        keys = {_key(user_id) for user_id in user_ids if isinstance(user_id, str)}
        held: set[str] = set()
        with _clear_errors():
            for part in chunks(keys, _IDS_PER_QUERY):
                marks, params = _in_list(part)
                held.update(_id(key) for key, in self._users.execute(
                    f"SELECT id FROM users WHERE id IN ({marks})", params))
        return held

    def record_built(self, user_ids: Iterable[str]) -> None:
        with _clear_errors(), closing(self._users.cursor()) as cursor:
            cursor.execute("BEGIN")
            cursor.executemany("INSERT OR IGNORE INTO users VALUES (?)",
                               ((_key(user_id),) for user_id in user_ids))
            cursor.execute("COMMIT")


class CompanyReader:
    """The companies of a ``Scratch``, read-only, for a worker process."""

    def __init__(self, path: str) -> None:
        with _clear_errors():
            self._db = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True)

    def company_lines(self, ids: Iterable[str]) -> Iterator[tuple[str, bytes, bool]]:
        return _company_lines(self._db, ids)


def _company_lines(db: sqlite3.Connection,
                   ids: Iterable[str]) -> Iterator[tuple[str, bytes, bool]]:
    for part in chunks(map(_key, ids), _IDS_PER_QUERY):
        marks, params = _in_list(part)
        with _clear_errors():
            rows = db.execute(f"SELECT id, traits, lenient FROM companies WHERE id IN ({marks})",
                              params).fetchall()
        for key, traits, lenient in rows:
            yield _id(key), traits, bool(lenient)


def _in_list(part: list[bytes]) -> tuple[str, list[bytes]]:
    """``?, ?, …`` and the parameters for ``IN (…)`` of ``part``, padded with its last key
    (``IN`` ignores repeats) to a power of two. Statements are cached by their text, and one
    with thousands of parameters is large: a few sizes keep that cache small."""
    size = 1 << (len(part) - 1).bit_length()
    return ",".join("?" * size), part + [part[-1]] * (size - len(part))


@contextmanager
def _clear_errors() -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise ScratchError(
            f"the transform's temporary tables (under {tempfile.gettempdir()}) failed: {exc}; "
            "free space there, or point TMPDIR at a larger local disk") from None


def _key(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _id(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass")
