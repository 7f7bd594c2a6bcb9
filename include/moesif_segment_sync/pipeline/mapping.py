"""From a Moesif user and its company to a Segment identify (trait-mapping.md).

Each Segment field is built in one place below, in the order of the tables
in trait-mapping.md. ``company_traits`` runs once per company; ``identify``
once per user, with the company already joined by the transform.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from .. import DISTRIBUTION, __version__
from ..settings import SEGMENT_MAX_MESSAGE_BYTES
from .models import COMPANY_SHAPE, USER_SHAPE, MoesifCompany, MoesifUser, Shape, conforms
from .privacy import allowed_traits
from .values import BadValue, compact, first_present, is_absent, to_timestamp, trimmed

LIBRARY = {"name": DISTRIBUTION, "version": __version__}
# Namespaces our messageIds: Segment de-duplicates globally, not per source.
MESSAGE_ID_PREFIX = "moesif-segment-sync-"
# A group call's messageId: its own prefix, so a message's kind shows in its id (``is_group``).
GROUP_MESSAGE_ID_PREFIX = MESSAGE_ID_PREFIX + "group-"
MAX_TRAITS = 300
# Every top-level trait an identify can carry, in the order of trait-mapping.md. The user
# state keeps which of them a user's last message had as bits in this order (``trait_mask``),
# so a name may be added at the end but never moved or removed.
TRAIT_ORDER = ("id", "createdAt", "modifiedTime", "firstSeenTime", "lastSeenTime", "name",
               "email", "username", "company", "campaign", "clearbit", "last24HourAggResults",
               "metadata", "userAgent")
_TRAIT_BIT = {name: 1 << position for position, name in enumerate(TRAIT_ORDER)}


class Warn(StrEnum):
    """Kinds of warning: the record is still sent, without the bad value."""

    UNKNOWN_COMPANY = "unknown_company"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_TTFHW = "bad_ttfhw"
    TOO_MANY_TRAITS = "too_many_traits"
    WRONG_TYPE = "wrong_type"


class RejectKind(StrEnum):
    NOT_AN_OBJECT = "not_an_object"
    UNREADABLE = "unreadable"
    NO_USER_ID = "no_user_id"
    NO_COMPANY_ID = "no_company_id"
    OVERSIZE = "oversize"
    UNSERIALIZABLE = "unserializable"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not sent, with a reason a person can read."""

    kind: RejectKind
    reason: str
    entity_id: str | None = None


@dataclass(frozen=True)
class Unreadable:
    """Stands for a staged line nested deeper than Python's parser can read; ``text`` is
    the line itself, kept for the reject."""

    text: str
    reason = "the record is nested too deeply to parse"


@dataclass(frozen=True)
class TraitPolicy:
    """Which top-level traits are sent (privacy.allowed_traits): all, by default."""

    allow: tuple[str, ...] | list[str] = ()
    deny: tuple[str, ...] | list[str] = ()


ALL_TRAITS = TraitPolicy()


@dataclass(frozen=True, slots=True)
class Message:
    """A built message: whose it is, its id, and its exact bytes as sent."""

    user_id: str
    message_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Identify(Message):
    """A built identify message, the top-level traits it has (``trait_mask``), and the
    ``group`` call of its user's company when asked for (``identify(group_calls=True)`` on a
    message with ``traits.company``)."""

    trait_mask: int = 0
    group: Message | None = None


def trait_mask(traits: dict) -> int:
    """Which of ``TRAIT_ORDER`` ``traits`` has, as bits."""
    return sum(_TRAIT_BIT[name] for name in traits)


def trait_names(mask: int) -> list[str]:
    """The traits of ``mask``, in ``TRAIT_ORDER``."""
    return [name for name in TRAIT_ORDER if mask & _TRAIT_BIT[name]]


def with_null_traits(body: bytes, names: list[str]) -> bytes:
    """An identify's bytes with ``"<name>":null`` added at the end of its traits, which are
    the message's last key (``identify`` writes them last): the rest stays byte for byte."""
    return body[:-2] + b"".join(b',"' + name.encode() + b'":null' for name in names) + b"}}"


def is_group(message_id: str) -> bool:
    """Whether a messageId is a group call's (else an identify's)."""
    return message_id.startswith(GROUP_MESSAGE_ID_PREFIX)


# ---------------------------------------------------------------- parsing

def _checked_id(record: object, field: str) -> str | Rejected:
    if isinstance(record, Unreadable):
        return Rejected(RejectKind.UNREADABLE, Unreadable.reason)
    if not isinstance(record, dict):
        return Rejected(RejectKind.NOT_AN_OBJECT,
                        f"record is a JSON {_json_type(record)}, not an object")
    kind = RejectKind.NO_USER_ID if field == "user_id" else RejectKind.NO_COMPANY_ID
    value = record.get(field)
    if value is None:
        return Rejected(kind, f"{field} is missing")
    if not isinstance(value, str):
        shown = json.dumps(value, default=str)[:60]
        return Rejected(kind, f"{field} must be a string, got a JSON {_json_type(value)}: {shown}")
    if not value.strip():
        return Rejected(kind, f"{field} is blank")
    if "\x00" in value:
        return Rejected(kind, f"{field} contains a NUL character, which no store or "
                              "destination keeps intact")
    return value


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _held_path(record: dict, loc: tuple) -> tuple:
    """The part of a validation error's location that names keys ``record`` really holds.

    A union type reports one error per alternative, with the alternative's
    name appended; only the keys matter.
    """
    held, value = [], record
    for key in loc:
        if not isinstance(value, dict) or key not in value:
            break
        held.append(key)
        value = value[key]
    return tuple(held)


def _without(record: dict, path: tuple) -> dict:
    """A copy of ``record`` without the key at ``path`` (copies only along the path)."""
    copy = dict(record)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = _without(copy[path[0]], path[1:])
    return copy


def _lenient(model: type[BaseModel], shape: Shape, record: dict, warnings: Counter) -> dict:
    """``record`` as ``model`` validates it, less each field of the wrong type (one warning
    each) instead of the record. Most records conform as they are (``conforms``, a few dict
    lookups); only the others are validated, which finds the fields to drop."""
    if conforms(record, shape):
        return record
    while True:
        try:
            model.model_validate(record)
            return record
        except ValidationError as exc:
            paths = {_held_path(record, error["loc"]) for error in exc.errors()} - {()}
            if not paths:  # nothing left to drop: a required field, checked before we get here
                raise
            for path in sorted(paths, key=len):
                if not any(path[:n] in paths for n in range(1, len(path))):
                    record = _without(record, path)
                    warnings[Warn.WRONG_TYPE] += 1


def _timestamp(value: object, warnings: Counter) -> str | None:
    if is_absent(value):
        return None
    try:
        return to_timestamp(value)
    except BadValue:
        warnings[Warn.BAD_TIMESTAMP] += 1
        return None


def _text(value: object) -> str | None:
    """A usable string: present and really a string (metadata values can be anything)."""
    return value if isinstance(value, str) and value.strip() else None


# ---------------------------------------------------------------- traits.company

def company_traits(record: object, warnings: Counter) -> dict | Rejected:
    """The ``traits.company`` object for one Moesif company."""
    company_id = _checked_id(record, "company_id")
    if isinstance(company_id, Rejected):
        return company_id
    company = _lenient(MoesifCompany, COMPANY_SHAPE, record, warnings)
    metadata = company.get("metadata") or {}
    return compact({
        "id": company_id,
        "name": trimmed(_text(metadata.get("name"))),
        "created": _timestamp(company.get("created"), warnings),
        "modifiedTime": _timestamp(company.get("modified_time"), warnings),
        "firstSeenTime": _timestamp(company.get("first_seen_time"), warnings),
        "lastSeenTime": _timestamp(company.get("last_seen_time"), warnings),
        "ipAddress": company.get("ip_address"),
        "companyDomain": first_present(company.get("company_domain"),
                                       company.get("domain_name")),
        "ttfhw_s": _ttfhw_seconds(company.get("ttfhw"), warnings),
        "metadata": company.get("metadata"),
    })


def _ttfhw_seconds(value: object, warnings: Counter) -> int | None:
    if is_absent(value):
        return None
    if (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0):
        return math.floor(value)
    warnings[Warn.BAD_TTFHW] += 1
    return None


# ---------------------------------------------------------------- the message

def identify(record: object, company: dict | None, *, default_timestamp: str,
             warnings: Counter, strict_json: bool = False,
             policy: TraitPolicy = ALL_TRAITS, group_calls: bool = False) -> Identify | Rejected:
    """Build one identify message.

    ``company`` is the joined company's traits, or None when the user has no
    company or the run does not have it. ``default_timestamp`` (the window's
    end) stands in for an absent or unparseable ``modified_time``.
    ``strict_json`` marks a record that only Python's lenient JSON parser
    could read (NaN, huge integers, lone surrogates): it is serialized by the
    standard library, which refuses what JSON cannot carry. ``policy`` says
    which top-level traits may be sent. ``group_calls`` also builds the user's ``group``
    call when the message has ``traits.company`` (``group``).
    """
    user_id = _checked_id(record, "user_id")
    if isinstance(user_id, Rejected):
        return user_id
    user = _lenient(MoesifUser, USER_SHAPE, record, warnings)
    traits = allowed_traits(_traits(user, company, warnings), policy.allow, policy.deny)
    if "metadata" in traits and _trait_count(traits) >= MAX_TRAITS:
        warnings[Warn.TOO_MANY_TRAITS] += 1
    context = _context(user)
    try:
        content = _canonical({"context": context, "traits": traits}, strict_json)
    except RecursionError:
        return Rejected(RejectKind.UNSERIALIZABLE, "the record is nested too deeply to "
                        "serialize", user_id)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        return Rejected(RejectKind.UNSERIALIZABLE,
                        f"the record holds a value JSON cannot carry ({exc})", user_id)
    message_id = _message_id(MESSAGE_ID_PREFIX, user_id, content)
    message = {
        "type": "identify",
        "userId": user_id,
        "messageId": message_id,
        "timestamp": traits.get("modifiedTime", default_timestamp),
        "context": context,
        "traits": traits,
    }
    body = _sized("message", message, user_id, strict_json)
    if isinstance(body, Rejected):
        return body
    group_call = None
    if group_calls and "company" in traits:
        group_call = group(user_id, traits["company"], default_timestamp=default_timestamp,
                           strict_json=strict_json)
        if isinstance(group_call, Rejected):
            return group_call
    return Identify(user_id, message_id, body, trait_mask(traits), group_call)


def group(user_id: str, company: dict, *, default_timestamp: str,
          strict_json: bool = False) -> Message | Rejected:
    """The ``group`` call linking a user to its company: the company's traits exactly as
    ``traits.company`` carries them (trait-mapping.md, "The group call")."""
    context = {"active": False, "library": LIBRARY}
    group_id = company["id"]
    content = _canonical({"context": context, "groupId": group_id, "traits": company},
                         strict_json)
    message = {
        "type": "group",
        "userId": user_id,
        "groupId": group_id,
        "messageId": _message_id(GROUP_MESSAGE_ID_PREFIX, user_id, content),
        "timestamp": company.get("modifiedTime", default_timestamp),
        "context": context,
        "traits": company,
    }
    body = _sized("group call", message, user_id, strict_json)
    if isinstance(body, Rejected):
        return body
    return Message(user_id, message["messageId"], body)


def _message_id(prefix: str, user_id: str, content: bytes) -> str:
    return prefix + hashlib.sha256(
        user_id.encode("utf-8", "surrogatepass") + b"\n" + content).hexdigest()


def _sized(what: str, message: dict, user_id: str, strict_json: bool) -> bytes | Rejected:
    """``message`` serialized, or an oversize reject when Segment would refuse its size."""
    body = _serialize(message, strict_json)
    if len(body) <= SEGMENT_MAX_MESSAGE_BYTES:
        return body
    return Rejected(RejectKind.OVERSIZE,
                    f"{what} is {len(body):,} bytes of JSON, over Segment's 32 KB limit "
                    f"({SEGMENT_MAX_MESSAGE_BYTES:,} bytes)", user_id)


def _traits(user: dict, company: dict | None, warnings: Counter) -> dict[str, Any]:
    metadata = user.get("metadata") or {}
    return compact({
        "id": user["user_id"],
        "createdAt": _timestamp(user.get("created"), warnings),
        "modifiedTime": _timestamp(user.get("modified_time"), warnings),
        "firstSeenTime": _timestamp(user.get("first_seen_time"), warnings),
        "lastSeenTime": _timestamp(user.get("last_seen_time"), warnings),
        "name": _name(user, metadata),
        "email": trimmed(first_present(user.get("email"), _text(metadata.get("email")))),
        "username": first_present(user.get("user_name"), _text(metadata.get("username"))),
        "company": _company(user, company, warnings),
        "campaign": _mapped(user.get("campaign"), CAMPAIGN),
        "clearbit": user.get("clearbit"),
        "last24HourAggResults": user.get("last_24h_agg_results"),
        "metadata": user.get("metadata"),
        "userAgent": _mapped(user.get("user_agent"), USER_AGENT),
    })


def _name(user: dict, metadata: dict) -> str | None:
    name = first_present(user.get("name"), _text(metadata.get("name")))
    if name is None:
        first = first_present(user.get("first_name"), _text(metadata.get("first_name")))
        last = first_present(user.get("last_name"), _text(metadata.get("last_name")))
        name = " ".join(part.strip() for part in (first, last) if part is not None)
    return trimmed(name) or None


def _company(user: dict, company: dict | None, warnings: Counter) -> dict | None:
    company_id = user.get("company_id")
    if is_absent(company_id):
        return None
    if company is None:
        warnings[Warn.UNKNOWN_COMPANY] += 1
        return {"id": company_id}
    return company


# Mapped objects, Segment name <- Moesif name, as the tables of trait-mapping.md list them.
CAMPAIGN = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign",
            "term": "utm_term", "content": "utm_content", "referrer": "referrer",
            "referringDomain": "referring_domain", "gclid": "gclid"}
USER_AGENT = {"name": "name", "major": "major", "minor": "minor", "os": "os",
              "osName": "os_name", "osMajor": "os_major", "osMinor": "os_minor",
              "device": "device"}
LOCATION = {"city": "city_name", "country": "country_name", "region": "region_name",
            "latitude": "latitude", "longitude": "longitude"}


def _mapped(source: dict | None, names: dict[str, str]) -> dict | None:
    """``source``'s fields under their Segment names; None when none is present."""
    if source is None:
        return None
    return compact({segment: source.get(moesif) for segment, moesif in names.items()})


def _context(user: dict) -> dict[str, Any]:
    geo = user.get("geo_ip")
    return compact({
        "ip": user.get("ip_address"),
        "location": _mapped(geo, LOCATION),
        "timezone": geo.get("timezone") if geo is not None else None,
        "userAgent": user.get("user_agent_string"),
        "active": False,
        "library": LIBRARY,
    })


def _trait_count(traits: dict) -> int:
    """Traits as Engage counts them: ``metadata`` flattened to its leaves."""
    return len(traits) - 1 + _leaves(traits["metadata"])


def _leaves(value: object) -> int:
    """Leaf values of nested objects, counted without recursion (metadata can be deep)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict) and item:
            stack.extend(item.values())
        else:
            count += 1
    return count


def _canonical(value: object, strict_json: bool) -> bytes:
    """Sorted keys, no spaces: the same content always gives the same bytes."""
    return _dumps(value, strict_json, sort_keys=True)


def _serialize(value: object, strict_json: bool) -> bytes:
    return _dumps(value, strict_json, sort_keys=False)


def _dumps(value: object, strict_json: bool, *, sort_keys: bool) -> bytes:
    """orjson when it can; the standard library for what orjson refuses (nesting past its
    depth limit) and for ``strict_json`` records. Raises ``ValueError`` (NaN, lone
    surrogates) or ``RecursionError`` for what cannot be sent."""
    if not strict_json:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")
