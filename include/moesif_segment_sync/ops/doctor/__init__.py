"""``python -m moesif_segment_sync doctor``: check the connections against the real accounts.

Why a doctor: moesif-api.md marks several facts *(inferred)* — three field
names, the largest page size, the form of ``hits.total``, the shape of a
GET by id — and Segment answers 200 to almost anything. Before the first
run on a new account, the doctor asks each API the few questions that
settle these, within a small budget of requests, and says for each check
OK, WARN, FAIL or INFO, why, and which setting fixes it. A differing field
name is answered through the one seam, ``MOESIF_SEGMENT_FIELD_NAMES``
(``moesif/fields.py``).

Checks return ``Finding`` objects and never print; ``render_text`` and
``render_json`` make the report and redact every key on the way out. The
doctor does not import Airflow: the CLI hands it the connection resolvers
of the ``airflow`` room, the same the DAG uses.

``checkup`` runs everything in order; ``moesif_checks`` (with its ``probe``,
``field_checks`` and ``page_checks``) and ``segment_checks`` ask the APIs;
``findings`` and ``render`` are the report.
"""

from .checkup import connection, read_settings, run
from .field_checks import (
    EITHER,
    FEEDS,
    HINTS,
    MAPPED,
    candidates,
    field_findings,
    field_names_finding,
    mapping_fields,
)
from .findings import Finding, Report, Status
from .moesif_checks import check_moesif, moesif_host_finding
from .page_checks import PageSizes, get_by_id_finding, largest_page_size, page_size_finding
from .probe import ENTITIES
from .render import render_json, render_text
from .segment_checks import check_segment, segment_host_finding, send_test_finding

__all__ = ["EITHER", "ENTITIES", "FEEDS", "HINTS", "MAPPED", "Finding", "PageSizes", "Report",
           "Status", "candidates", "check_moesif", "check_segment", "connection",
           "field_findings", "field_names_finding", "get_by_id_finding", "largest_page_size",
           "mapping_fields", "moesif_host_finding", "page_size_finding", "read_settings",
           "render_json", "render_text", "run", "segment_host_finding", "send_test_finding"]
