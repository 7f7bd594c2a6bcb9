"""The one seam for Moesif field names that are inferred, not documented (moesif-api.md).

The mapping reads these fields under the names below. When an account turns
out to use another name (the doctor checks), set
``MOESIF_SEGMENT_FIELD_NAMES='{"users.last_24h_agg_results": "the_account_name"}'``:
records are read through the override, and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

INFERRED: dict[str, tuple[str, ...]] = {
    "users": ("created", "clearbit", "last_24h_agg_results"),
    "companies": ("ttfhw",),
}


@dataclass(frozen=True)
class FieldNames:
    """For each entity, the mapping's name -> the account's name, where they differ."""

    renames: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_overrides(cls, overrides: dict[str, str]) -> FieldNames:
        renames: dict[str, dict[str, str]] = {}
        for key, actual in overrides.items():
            entity, _, name = key.partition(".")
            if name not in INFERRED.get(entity, ()):
                known = ", ".join(f"{e}.{n}" for e, names in INFERRED.items() for n in names)
                raise ConfigError(f"MOESIF_SEGMENT_FIELD_NAMES: {key!r} is not an inferred "
                                  f"field; the ones that can be renamed are {known}")
            if not isinstance(actual, str) or not actual.strip():
                raise ConfigError(f"MOESIF_SEGMENT_FIELD_NAMES: {key!r} needs a field name")
            if actual != name:
                renames.setdefault(entity, {})[name] = actual
        return cls(renames)

    def actual(self, entity: str, name: str) -> str:
        """The account's name for one of the mapping's fields."""
        return self.renames.get(entity, {}).get(name, name)

    def canonical(self, entity: str, record: object) -> object:
        """``record`` with the account's names read into the names the mapping uses."""
        renames = self.renames.get(entity)
        if not renames or not isinstance(record, dict):
            return record
        copy = dict(record)
        for name, actual in renames.items():
            copy.pop(name, None)
            if actual in record:
                copy[name] = record[actual]
        return copy


AS_INFERRED = FieldNames()  # no overrides: the names moesif-api.md infers
