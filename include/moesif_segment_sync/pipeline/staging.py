"""Staged files of one run: ``<root>/<dag_id>/<run_id>/``.

Every file is gzip-compressed JSON Lines (one record per line) or plain
JSON, readable with standard tools: ``zcat users.jsonl.gz | jq .``. Writes
are atomic: a file is written under a temporary name and renamed when
complete, so a killed task never leaves half a file for a later task.
The root is an fsspec URL (``file://``, ``memory://``, ``s3://``, ``gs://``),
the same URLs as Airflow's ``ObjectStoragePath``.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
import orjson
from isal import isal_zlib

from .. import codec
from ..errors import StagingError

USERS = "users.jsonl.gz"                      # users changed or seen in the window
USERS_VIA_COMPANY = "users_via_company.jsonl.gz"  # users of companies changed in it
COMPANIES = "companies.jsonl.gz"              # companies changed or seen in the window
USER_COMPANIES = "user_companies.jsonl.gz"    # other companies the users belong to
REJECTS = "rejects.jsonl.gz"                  # rejected records, whole, with reasons
LOOKBACK_IDS = "lookback_ids.jsonl.gz"        # users found only by the lookback
AUDIT = "audit.json"

# Lines are handed to the compressor in blocks of about this many bytes: one call per block
# instead of one GzipFile.write per line.
BLOCK_BYTES = 1 << 20
# Compressed bytes read at a time (a block or so of lines once inflated).
READ_BYTES = 256 << 10
_GZIP = 16 + zlib.MAX_WBITS  # the compressor writes and checks the gzip header and trailer


# The messages come in shards, one mapped load task each.
def messages_file(shard: int) -> str:
    """Identify messages of one shard, exactly as built."""
    return f"messages-{shard:05d}.jsonl.gz"


def heads_file(shard: int) -> str:
    """``[userId, messageId, trait mask]`` of each message of ``messages_file(shard)``, line for
    line: the load plans, packs and keeps its ledger from these without parsing a message."""
    return f"heads-{shard:05d}.jsonl.gz"


def groups_file(shard: int) -> str:
    """Group calls of the shard's users (with ``MOESIF_SEGMENT_GROUP_CALLS``), exactly as
    built; loaded after the shard's identify messages, as if they followed them."""
    return f"groups-{shard:05d}.jsonl.gz"


def group_heads_file(shard: int) -> str:
    """``[userId, messageId]`` of each group call of ``groups_file(shard)``, line for line."""
    return f"group_heads-{shard:05d}.jsonl.gz"


def shard_files(shard: int) -> tuple[str, ...]:
    """The files the transform stages for one shard."""
    return (messages_file(shard), heads_file(shard), groups_file(shard),
            group_heads_file(shard))


def head_line(user_id: str, message_id: str, trait_mask: int | None = None) -> bytes:
    """One line of a heads file: ``[userId, messageId]``, and for an identify the top-level
    traits it has (``mapping.trait_mask``)."""
    if trait_mask is None:
        return orjson.dumps([user_id, message_id])
    return orjson.dumps([user_id, message_id, trait_mask])


def to_send_file(shard: int) -> str:
    """The shard's messages whose content Segment did not have yet, as loads before the heads
    file staged them (read only for the sent-messages download of such runs)."""
    return f"to_send-{shard:05d}.jsonl.gz"


def refused_file(shard: int, batch_no: int) -> str:
    """Messages of one batch that Segment refused one by one (``segment_refused`` rejects)."""
    return f"segment_refused-{shard:05d}-{batch_no:06d}.jsonl.gz"


# The ledger's error of a batch whose refused messages became rejects (then refused_file).
REFUSED_NOTE = "refused by Segment, kept as rejects: "


def diff_file(shard: int) -> str:
    """A dry run's diff preview of the shard: per user, the traits it would add, change and
    remove (``pipeline.diff``)."""
    return f"diff-{shard:05d}.jsonl.gz"


def plan_file(shard: int) -> str:
    """What the shard's load decided to send, and why."""
    return f"load_plan-{shard:05d}.json"


class Staging:
    """The staged files of one run, under one root URL."""

    def __init__(self, root_url: str, dag_id: str, run_id: str, *, compress_level: int = 1):
        try:
            self.fs, root = fsspec.core.url_to_fs(root_url)
        except (ValueError, ImportError) as exc:
            raise StagingError(f"staging root {root_url!r} is not a usable URL: {exc}") from None
        self.root_url = root_url
        self.dir = f"{root.rstrip('/')}/{_safe(dag_id)}/{_safe(run_id)}"
        self.compress_level = compress_level

    @property
    def dir_url(self) -> str:
        """The run's folder as a URL."""
        return self.fs.unstrip_protocol(self.dir)

    def url(self, name: str) -> str:
        """A staged file's full URL, for logs and the audit record."""
        return self.fs.unstrip_protocol(self.path(name))

    def path(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def remove(self, name: str) -> None:
        """Delete a staged file if it is there (a leftover of an earlier attempt)."""
        if self.fs.exists(self.path(name)):
            self.fs.rm(self.path(name))

    @contextmanager
    def writer(self, name: str) -> Iterator[JsonLinesWriter]:
        """Write ``name`` line by line; it appears only when the block ends without error."""
        with self._atomic(name) as raw:
            out = JsonLinesWriter(raw, self.compress_level)
            yield out
            out.finish()

    def write_json(self, name: str, value: Any) -> None:
        with self._atomic(name) as raw:
            raw.write(json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n")

    def read_json(self, name: str) -> Any:
        try:
            with self.fs.open(self.path(name), "rb") as raw:
                return json.loads(raw.read())
        except FileNotFoundError:
            raise StagingError(f"staged file {self.url(name)} is missing") from None

    def lines(self, name: str) -> Iterator[bytes]:
        """The lines of a staged ``.jsonl.gz`` file, without their newline."""
        try:
            raw = self.fs.open(self.path(name), "rb")
        except FileNotFoundError:
            raise StagingError(f"staged file {self.url(name)} is missing") from None
        with raw:
            tail = b""
            try:
                for block in _gunzip(raw):
                    lines = block.split(b"\n")
                    lines[0] = tail + lines[0]
                    tail = lines.pop()
                    yield from lines
            except (EOFError, isal_zlib.error) as exc:
                raise StagingError(f"staged file {self.url(name)} is not whole gzip "
                                   f"(truncated or damaged): {exc}") from None
            if tail:
                yield tail

    @contextmanager
    def _atomic(self, name: str) -> Iterator[IO[bytes]]:
        final = self.path(name)
        temp = f"{final}.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(self.dir, exist_ok=True)
            raw = self.fs.open(temp, "wb")
        except OSError as exc:
            raise StagingError(f"cannot write {self.url(name)}: {exc.strerror or exc}") from None
        try:
            with raw:
                yield raw
            self.fs.mv(temp, final)
        except OSError as exc:
            self._discard(temp)
            raise StagingError(f"cannot write {self.url(name)}: {exc.strerror or exc}") from None
        except BaseException:
            self._discard(temp)
            raise

    def _discard(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except (OSError, FileNotFoundError):
            pass


class JsonLinesWriter:
    """Counts what it writes so a task can report lines without re-reading.

    Lines are buffered and compressed in blocks of about ``BLOCK_BYTES``: one
    call per block costs less than a ``GzipFile.write`` per line, and the
    compressor lets other threads run while it compresses a block.
    """

    def __init__(self, raw: IO[bytes], compress_level: int) -> None:
        self._raw = raw
        self._deflate = _compressor(compress_level)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.lines = 0

    def write_line(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.lines += 1
        if self._pending_bytes >= BLOCK_BYTES:
            self._compress()

    def write_lines(self, lines: list[bytes]) -> None:
        """Many lines at once (a page of hits)."""
        self._pending += lines
        self._pending_bytes += sum(map(len, lines))
        self.lines += len(lines)
        if self._pending_bytes >= BLOCK_BYTES:
            self._compress()

    def write(self, value: Any, *, lenient: bool = False) -> None:
        self.write_line(codec.dumps(value, lenient=lenient))

    def _compress(self) -> None:
        self._pending.append(b"")  # the last line's newline
        self._raw.write(self._deflate.compress(b"\n".join(self._pending)))
        self._pending = []
        self._pending_bytes = 0

    def finish(self) -> None:
        """Compress what is buffered and end the gzip member (its checksum and size);
        ``Staging.writer`` calls it when its block ends without error."""
        if self._pending:
            self._compress()
        self._raw.write(self._deflate.flush())


def _compressor(level: int) -> Any:
    """A gzip compressor at ``level`` (``MOESIF_SEGMENT_COMPRESS_LEVEL``): ISA-L's for 1 to 3,
    which compresses the benchmark's users nearly five times as fast as zlib's level 1, and a
    little smaller (``docs/development.md``); zlib's for 0 (stored) and for 4 to 9, which ISA-L has
    not. Both write plain gzip, which any gzip reader reads."""
    if 1 <= level <= isal_zlib.ISAL_BEST_COMPRESSION:
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP)
    return zlib.compressobj(level, zlib.DEFLATED, _GZIP)


def _gunzip(raw: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file in blocks of at most ``BLOCK_BYTES``; members
    one after another, as ``gzip`` reads them. ISA-L inflates any gzip in under half zlib's time."""
    inflate, started = isal_zlib.decompressobj(_GZIP), False
    while chunk := raw.read(READ_BYTES):
        while chunk:
            started = True
            yield inflate.decompress(chunk, BLOCK_BYTES)
            if inflate.unconsumed_tail:
                chunk = inflate.unconsumed_tail
            elif inflate.eof:
                chunk = inflate.unused_data
                inflate, started = isal_zlib.decompressobj(_GZIP), False
            else:
                break
    if started:
        yield inflate.flush()
        if not inflate.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def _safe(part: str) -> str:
    """A run id as one path segment: no slashes, nothing that looks like a parent."""
    cleaned = part.replace("/", "_").replace("\\", "_")
    return "_" + cleaned if cleaned in ("", ".", "..") else cleaned
