"""Pydantic models: the schema of each boundary.

Moesif records in (``MoesifUser``, ``MoesifCompany``), identify messages
out (``IdentifyMessage``). Input models read only the fields the mapping
uses and let the rest through untouched (``extra="allow"``); a field of the
wrong type fails validation, and ``mapping`` drops just that field with a
warning rather than losing the user.
"""

from __future__ import annotations

from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

Text = StrictStr | None
Number = StrictInt | StrictFloat | None
Object = dict[str, Any] | None


class _Source(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Campaign(_Source):
    utm_source: Text = None
    utm_medium: Text = None
    utm_campaign: Text = None
    utm_term: Text = None
    utm_content: Text = None
    referrer: Text = None
    referring_domain: Text = None
    gclid: Text = None


class GeoIp(_Source):
    city_name: Text = None
    country_name: Text = None
    region_name: Text = None
    latitude: Number = None
    longitude: Number = None
    timezone: Text = None


class UserAgent(_Source):
    name: Text = None
    major: Text = None
    minor: Text = None
    os: Text = None
    os_name: Text = None
    os_major: Text = None
    os_minor: Text = None
    device: Text = None


class MoesifUser(_Source):
    """A user's ``_source`` (moesif-api.md, "User document")."""

    user_id: StrictStr
    company_id: Text = None
    email: Text = None
    name: Text = None
    first_name: Text = None
    last_name: Text = None
    user_name: Text = None
    metadata: Object = None
    campaign: Campaign | None = None
    ip_address: Text = None
    geo_ip: GeoIp | None = None
    user_agent: UserAgent | None = None
    user_agent_string: Text = None
    created: Any = None
    first_seen_time: Any = None
    last_seen_time: Any = None
    modified_time: Any = None
    clearbit: Object = None
    last_24h_agg_results: Object = None


class MoesifCompany(_Source):
    """A company's ``_source`` (moesif-api.md, "Company document")."""

    company_id: StrictStr
    company_domain: Text = None
    domain_name: Text = None
    metadata: Object = None
    ip_address: Text = None
    created: Any = None
    modified_time: Any = None
    first_seen_time: Any = None
    last_seen_time: Any = None
    ttfhw: Any = None


# The JSON types each field of an input model takes ({name: types, or a nested model's shape}),
# derived from the models above, so that a record can be checked against them in a few dict
# lookups (``conforms``) and only one that does not conform is validated.
Shape = dict[str, "frozenset[type] | Shape"]


def shape_of(model: type[BaseModel]) -> Shape:
    """``model``'s fields and the JSON types each takes; a field of any type is left out."""
    shape: Shape = {}
    for name, field in model.model_fields.items():
        if field.annotation is not Any:
            shape[name] = _types(field.annotation)
    return shape


def _types(annotation: Any) -> frozenset[type] | Shape:
    kinds: set[type] = set()
    for arg in get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (
            annotation,):
        if get_origin(arg) is Annotated:  # StrictStr and friends: the type, strictly
            arg = get_args(arg)[0]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return shape_of(arg)
        if arg is not NoneType:
            kinds.add(get_origin(arg) or arg)
    if not kinds <= {str, int, float, dict}:
        raise TypeError(f"no JSON type for {annotation!r}")
    return frozenset(kinds)


def conforms(record: dict, shape: Shape) -> bool:
    """Whether every field of ``shape`` in ``record`` is null or of its JSON type, exactly
    (a boolean is not a number): then ``record`` validates unchanged against its model."""
    for name, kinds in shape.items():
        value = record.get(name)
        if value is None:
            continue
        if type(kinds) is dict:
            if type(value) is not dict or not conforms(value, kinds):
                return False
        elif type(value) not in kinds:
            return False
    return True


USER_SHAPE = shape_of(MoesifUser)
COMPANY_SHAPE = shape_of(MoesifCompany)


# The identify message, as sent (trait-mapping.md, "The message").

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Library(_Out):
    name: str
    version: str


class Location(_Out):
    city: str | None = None
    country: str | None = None
    region: str | None = None
    latitude: float | None = None
    longitude: float | None = None


class Context(_Out):
    active: Literal[False]
    library: Library
    ip: str | None = None
    location: Location | None = None
    timezone: str | None = None
    userAgent: str | None = None


class CompanyTraits(_Out):
    id: str
    name: str | None = None
    created: str | None = None
    modifiedTime: str | None = None
    firstSeenTime: str | None = None
    lastSeenTime: str | None = None
    ipAddress: str | None = None
    companyDomain: str | None = None
    ttfhw_s: int | None = None
    metadata: dict[str, Any] | None = None


class CampaignTraits(_Out):
    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None
    referrer: str | None = None
    referringDomain: str | None = None
    gclid: str | None = None


class UserAgentTraits(_Out):
    name: str | None = None
    major: str | None = None
    minor: str | None = None
    os: str | None = None
    osName: str | None = None
    osMajor: str | None = None
    osMinor: str | None = None
    device: str | None = None


class Traits(_Out):
    id: str
    createdAt: str | None = None
    modifiedTime: str | None = None
    firstSeenTime: str | None = None
    lastSeenTime: str | None = None
    name: str | None = None
    email: str | None = None
    username: str | None = None
    company: CompanyTraits | None = None
    campaign: CampaignTraits | None = None
    clearbit: dict[str, Any] | None = None
    last24HourAggResults: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    userAgent: UserAgentTraits | None = None


class IdentifyMessage(_Out):
    type: Literal["identify"]
    userId: str = Field(min_length=1)
    messageId: str = Field(max_length=100)
    timestamp: str
    context: Context
    traits: Traits
