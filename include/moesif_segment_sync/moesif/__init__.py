"""The source: Moesif's Management API. What the sync asks (``queries``), how it pages
(``paging``), the client that sends it (``client``), and the field names moesif-api.md
infers rather than documents (``fields``)."""

from .client import SEARCH_PATH, Entity, MoesifClient
from .fields import AS_INFERRED, INFERRED, FieldNames
from .paging import Page, SearchAfterPaginator
from .queries import changed_in_window, companies_by_id, everything, members_of, users_by_id

__all__ = ["AS_INFERRED", "INFERRED", "SEARCH_PATH", "Entity", "FieldNames", "MoesifClient",
           "Page", "SearchAfterPaginator", "changed_in_window", "companies_by_id", "everything",
           "members_of", "users_by_id"]
