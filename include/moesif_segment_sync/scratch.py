"""The transform's lookup tables, on disk: companies by id, and the user ids already built.

Both grow with the run (a company per twenty users, say, and every user), so
they live in a private temporary SQLite database instead of in memory: the
transform takes the same memory at a million users as at a hundred
thousand. SQLite creates the file itself and deletes it when the connection
closes, so a killed task leaves nothing behind for the next attempt.

Ids are stored as UTF-8 bytes (``surrogatepass``): a lone surrogate, which
the lenient JSON parser lets through, is a valid key here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing

from .staging import chunks

# Under SQLite's default limit of 32,766 variables per statement.
_IDS_PER_QUERY = 5000


class Scratch:
    """Companies (first staged wins) and the set of user ids seen, for one transform."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary database: a file it removes on close. Nothing is
        # worth keeping after a crash, so no journal and no fsync.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript("""
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -2000;
            CREATE TABLE companies (id BLOB PRIMARY KEY, traits BLOB NOT NULL,
                                    lenient INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE users (id BLOB PRIMARY KEY) WITHOUT ROWID;
        """)
        self.companies = 0

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()

    def add_companies(self, rows: Iterable[tuple[str, bytes, bool]]) -> None:
        """(company_id, traits as a staged JSON line, lenient); an id already held is kept."""
        with closing(self._db.cursor()) as cursor:
            cursor.execute("BEGIN")
            cursor.executemany("INSERT OR IGNORE INTO companies VALUES (?, ?, ?)",
                               ((_key(id_), traits, lenient) for id_, traits, lenient in rows))
            cursor.execute("COMMIT")
            self.companies = cursor.execute("SELECT count(*) FROM companies").fetchone()[0]

    def company_lines(self, ids: Iterable[str]) -> Iterator[tuple[str, bytes, bool]]:
        """(company_id, traits line, lenient) for each of ``ids`` the table holds."""
        for part in chunks(ids, _IDS_PER_QUERY):
            marks = ",".join("?" * len(part))
            for key, traits, lenient in self._db.execute(
                    f"SELECT id, traits, lenient FROM companies WHERE id IN ({marks})",
                    [_key(id_) for id_ in part]):
                yield _id(key), traits, bool(lenient)

    def built_before(self, user_ids: Iterable[object]) -> set[str]:
        """The ids among ``user_ids`` that an earlier chunk built (see ``record_built``)."""
        keys = {_key(user_id) for user_id in user_ids if isinstance(user_id, str)}
        held: set[str] = set()
        for part in chunks(keys, _IDS_PER_QUERY):
            marks = ",".join("?" * len(part))
            held.update(_id(key) for key, in self._db.execute(
                f"SELECT id FROM users WHERE id IN ({marks})", part))
        return held

    def record_built(self, user_ids: Iterable[str]) -> None:
        with closing(self._db.cursor()) as cursor:
            cursor.execute("BEGIN")
            cursor.executemany("INSERT OR IGNORE INTO users VALUES (?)",
                               ((_key(user_id),) for user_id in user_ids))
            cursor.execute("COMMIT")


def _key(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _id(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass")
