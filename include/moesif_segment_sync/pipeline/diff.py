"""What an identify changes against the last one Segment accepted for its user.

The user state keeps each accepted identify compressed (``pack``), for
``MOESIF_SEGMENT_CONTENT_RETENTION``; a dry run compares every message it
would send with it (``Preview``): each user's added, changed and removed
traits go to ``staging.diff_file(shard)`` and their counts per trait to the
run's record. Traits are compared leaf by leaf, named by their dotted path
(``company.name``, ``metadata.plan``); a list is one leaf.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
import zstandard

from ..codec import format_utc
from ..segment import Batch
from ..summaries import diff_summed
from . import staging
from .mapping import is_group
from .staging import JsonLinesWriter, Staging

# A packed message: a version byte, then the message compressed against ZDICT: zstd (this
# release), or raw deflate (1, written by earlier releases and still read). A later
# dictionary takes a new version byte; ZDICT itself never changes.
_DEFLATE, _ZSTD = b"\x01", b"\x02"
# What every identify has in common, as zlib's preset dictionary: its keys in their order and
# the shapes of their values. A message of about 1.3 KB packs into about a third of what plain
# deflate makes of it (docs/storage.md).
ZDICT = (
    b'"library":{"name":"moesif-segment-sync","version":"0."}},"active":false,'
    b'"context":{"ip":"","location":{"city":"","country":"United States","region":"",'
    b'"latitude":,"longitude":-},"timezone":"America/","userAgent":"Mozilla/5.0 (Windows NT '
    b'10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/ Safari/537.36",'
    b'"campaign":{"source":"google","medium":"cpc","name":"","term":"","content":"",'
    b'"referrer":"https://www.","referringDomain":"www.","gclid":""},'
    b'"userAgent":{"name":"Chrome","major":"","minor":"0","os":"Mac OS X","osName":"Mac OS X",'
    b'"osMajor":"","osMinor":"","device":"Other"},"clearbit":{"person":{"employment":'
    b'{"title":""}}},"last24HourAggResults":{"event_count":,"errors":0},'
    b'"company":{"id":"","name":"","created":"2024-","modifiedTime":"2026-","firstSeenTime":'
    b'"2025-","lastSeenTime":"2026-","ipAddress":"","companyDomain":".com","ttfhw_s":,'
    b'"metadata":{"name":"","plan":"enterprise","seats":}},"metadata":{"email":"@example.com",'
    b'"first_name":"","last_name":"","plan":"","company":""},'
    b'{"type":"identify","userId":"","messageId":"moesif-segment-sync-","timestamp":"2026-'
    b'T00:00:00.000Z","traits":{"id":"","createdAt":"2025-","modifiedTime":"2026-",'
    b'"firstSeenTime":"2025-","lastSeenTime":"2026-","name":"","email":"@example.com",'
    b'"username":""'
)


def pack(message: bytes) -> bytes:
    """A message's bytes as the user state keeps them."""
    return _ZSTD + _zstd().compress(message)


def unpack(packed: bytes) -> dict:
    """The message ``pack`` kept."""
    version, body = packed[:1], packed[1:]
    if version == _ZSTD:
        return orjson.loads(_zstd_reader().decompress(body))
    if version == _DEFLATE:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS, zdict=ZDICT)
        return orjson.loads(inflate.decompress(body) + inflate.flush())
    raise ValueError(f"kept content of an unknown format {version!r}")


# zstd, not zlib: deflate allocates and clears its state for every message, which was most
# of the 48 µs a message took; a zstd context is made once per thread and reused, with the
# dictionary digested once. Level 1 with a 32 KB hash table and a 16 KB window (the
# dictionary and a message fit in it): level 3's default tables (768 KB) fall out of the CPU
# caches between two messages of a load, for 2% fewer bytes. Any zstd frame against ZDICT
# reads back, so content packed with other parameters (level 3, before) still does
# (docs/storage.md has the figures).
_ZSTD_PARAMETERS = zstandard.ZstdCompressionParameters.from_level(
    1, window_log=14, hash_log=13, chain_log=13, write_checksum=False, write_dict_id=False)
_ZSTD_DICT = zstandard.ZstdCompressionDict(ZDICT, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_ZSTD_DICT.precompute_compress(compression_params=_ZSTD_PARAMETERS)
_contexts = threading.local()  # a zstd context is not safe to share between threads


def _zstd() -> zstandard.ZstdCompressor:
    if not hasattr(_contexts, "compressor"):
        _contexts.compressor = zstandard.ZstdCompressor(
            dict_data=_ZSTD_DICT, compression_params=_ZSTD_PARAMETERS)
    return _contexts.compressor


def _zstd_reader() -> zstandard.ZstdDecompressor:
    if not hasattr(_contexts, "reader"):
        _contexts.reader = zstandard.ZstdDecompressor(dict_data=_ZSTD_DICT)
    return _contexts.reader


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A traits object's leaves by dotted path; an empty object or a list is one leaf, and a
    null trait (a removed trait sent as null) is none."""
    found: dict[str, Any] = {}
    stack = [(prefix, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict) and item:
            stack.extend((f"{path}.{key}" if path else str(key), inner)
                         for key, inner in item.items() if not (inner is None and not path))
        else:
            found[path] = item
    return found


def changes(previous: dict, current: dict) -> dict[str, dict]:
    """The traits ``current`` adds, changes and removes against ``previous``."""
    old, new = leaves(previous), leaves(current)
    return {
        "added": {path: new[path] for path in sorted(new.keys() - old.keys())},
        "changed": {path: [old[path], new[path]] for path in sorted(new.keys() & old.keys())
                    if old[path] != new[path] or type(old[path]) is not type(new[path])},
        "removed": {path: old[path] for path in sorted(old.keys() - new.keys())},
    }


class Preview:
    """The diff of a dry run's shard: each identify it would send against the last one
    Segment accepted for its user, a line per user in ``out``, summed in ``summary``."""

    def __init__(self, out: JsonLinesWriter,
                 kept: Callable[[list[str]], dict[str, tuple[datetime, bytes | None]]]) -> None:
        self._out, self._kept = out, kept
        self.users: Counter = Counter()  # changed, new, not_kept
        self.traits: Counter = Counter()  # "<path> added|changed|removed"

    def add(self, batch: Batch) -> None:
        heads = batch.parsed_heads()
        identifies = [(head[0], message) for head, message in zip(heads, batch.messages,
                                                                  strict=True)
                      if not is_group(head[1])]
        kept = self._kept([user_id for user_id, _ in identifies])
        for user_id, message in identifies:
            traits = orjson.loads(message)["traits"]
            accepted_at, packed = kept.get(user_id, (None, None))
            line: dict[str, Any] = {"userId": user_id}
            if accepted_at is None:
                line["status"] = "new"
                line["added"] = leaves(traits)
            elif packed is None:
                line["status"] = "not_kept"
                line["previous_accepted_at"] = format_utc(accepted_at)
            else:
                line["status"] = "changed"
                line["previous_accepted_at"] = format_utc(accepted_at)
                line.update(changes(unpack(packed)["traits"], traits))
                for kind in ("added", "changed", "removed"):
                    self.traits.update(f"{path} {kind}" for path in line[kind])
            self.users[line["status"]] += 1
            self._out.write_line(orjson.dumps(line))

    def summary(self) -> dict[str, Any]:
        """What the run record keeps: users by status (changed, new, not_kept), and how many
        users each trait change concerns, the most common first."""
        return diff_summed([{"users": self.users, "traits": self.traits}])


def staged(stage: Staging, shards: int) -> Iterator[dict]:
    """A dry run's diff preview, user by user (none for a run that staged none)."""
    for shard in range(shards):
        if stage.exists(staging.diff_file(shard)):
            yield from map(orjson.loads, stage.lines(staging.diff_file(shard)))
