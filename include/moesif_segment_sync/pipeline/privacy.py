"""Personal data: hash named fields before anything is staged, and limit which traits are sent.

``MOESIF_SEGMENT_HASH_FIELDS=["email"]`` replaces each named field of a
Moesif user (at the top level and in ``metadata``) with the SHA-256 of its
trimmed value as the records are extracted, so neither staged files, nor
rejects, nor Segment see the clear value. ``MOESIF_SEGMENT_TRAIT_ALLOW`` and
``MOESIF_SEGMENT_TRAIT_DENY`` (lists of trait names) choose which top-level
traits are sent; ``id`` is always sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection


def sha256(value: str) -> str:
    return hashlib.sha256(value.strip().encode("utf-8", "surrogatepass")).hexdigest()


def hash_fields(hit: object, names: Collection[str]) -> object:
    """A search hit whose user has the named string fields hashed (a copy; others unchanged)."""
    if not names or not isinstance(hit, dict) or not isinstance(hit.get("_source"), dict):
        return hit
    source = _hashed(hit["_source"], names)
    if isinstance(source.get("metadata"), dict):
        source["metadata"] = _hashed(source["metadata"], names)
    return {**hit, "_source": source}


def _hashed(record: dict, names: Collection[str]) -> dict:
    copy = dict(record)
    for name in names:
        value = copy.get(name)
        if isinstance(value, str) and value.strip():
            copy[name] = sha256(value)
    return copy


def allowed_traits(traits: dict, allow: Collection[str], deny: Collection[str]) -> dict:
    """The traits to send: only ``allow`` when it is given, never ``deny``; always ``id``."""
    if not allow and not deny:
        return traits
    return {name: value for name, value in traits.items()
            if name == "id" or ((not allow or name in allow) and name not in deny)}
