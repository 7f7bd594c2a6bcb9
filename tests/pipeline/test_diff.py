"""Kept content: what ``diff.pack`` writes, ``diff.unpack`` reads back, in every format."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import zstandard

from moesif_segment_sync.pipeline import diff

MESSAGE = orjson.dumps({
    "type": "identify", "userId": "u1", "messageId": "moesif-segment-sync-ab12",
    "timestamp": "2026-01-01T12:00:00.000Z",
    "context": {"ip": "10.0.0.1", "active": False,
                "library": {"name": "moesif-segment-sync", "version": "0.1.0"}},
    "traits": {"id": "u1", "email": "ada@example.com", "metadata": {"plan": "pro", "n": 3}}})


def test_a_packed_message_reads_back_exactly_and_is_smaller():
    packed = diff.pack(MESSAGE)
    assert packed[:1] == b"\x02"
    assert len(packed) < len(MESSAGE) / 2
    assert diff.unpack(packed) == orjson.loads(MESSAGE)


def test_content_an_earlier_release_deflated_is_still_read():
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=diff.ZDICT)
    packed = b"\x01" + deflate.compress(MESSAGE) + deflate.flush()
    assert diff.unpack(packed) == orjson.loads(MESSAGE)


def test_content_packed_at_the_earlier_zstd_level_is_still_read():
    """Stores hold content packed at zstd's level 3 with its default tables (the release
    before): the dictionary is the same, so it reads back."""
    zdict = zstandard.ZstdCompressionDict(diff.ZDICT, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    level_3 = zstandard.ZstdCompressor(level=3, dict_data=zdict, write_checksum=False,
                                       write_dict_id=False)
    packed = b"\x02" + level_3.compress(MESSAGE)
    assert packed != diff.pack(MESSAGE)
    assert diff.unpack(packed) == orjson.loads(MESSAGE)


def test_content_of_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        diff.unpack(b"\x09" + MESSAGE)


def test_threads_pack_and_unpack_at_once_without_mixing_messages():
    messages = [MESSAGE.replace(b"u1", f"user-{n}".encode()) for n in range(2000)]
    with ThreadPoolExecutor(4) as pool:
        packed = list(pool.map(diff.pack, messages))
        read = list(pool.map(diff.unpack, packed))
    assert read == [orjson.loads(message) for message in messages]
