"""The pipeline: from Moesif's records to staged identify messages and load plans.

``extract`` stages what the source returns, ``mapping`` (with ``values``, ``models`` and
``privacy``) builds one message the way trait-mapping.md says, ``transform`` joins
companies onto users and maps them in chunks (``scratch`` holds its lookups on disk),
``plan`` decides what a shard's load sends and ``load`` sends it (with the ledger), and
``staging`` keeps every file of a run.
``transform`` imports pandas, so it is imported where it runs, not here.
"""

from . import extract, mapping, models, plan, privacy, staging, values
from .mapping import RejectKind, TraitPolicy
from .models import IdentifyMessage, MoesifCompany, MoesifUser
from .staging import JsonLinesWriter, Staging

__all__ = ["IdentifyMessage", "JsonLinesWriter", "MoesifCompany", "MoesifUser", "RejectKind",
           "Staging", "TraitPolicy", "extract", "load", "mapping", "models", "plan", "privacy",
           "staging", "transform", "values"]
