"""The package as an Airflow provider: its two connection types, declared the way Airflow
3.2+ reads them (``conn-fields`` and ``ui-field-behaviour``, no hook import needed to draw
the form), found through the ``apache_airflow_provider`` entry point in pyproject.toml.

This module imports nothing: Airflow calls ``get_provider_info`` in every process at start.
"""

from __future__ import annotations

PACKAGE = "moesif-segment-sync"
_HOOKS = "moesif_segment_sync.airflow.hooks"
_LINEAGE = "moesif_segment_sync.airflow.lineage"


def get_provider_info() -> dict:
    from .. import __version__

    return {
        "package-name": PACKAGE,
        "name": "Moesif to Segment sync",
        "description": "Connection types for the Moesif Management API and a Segment source, "
                       "used by the moesif_to_segment DAG.",
        "versions": [__version__],
        "hooks": [{"integration-name": "Moesif to Segment sync", "python-modules": [_HOOKS]}],
        "asset-uris": [{
            "schemes": ["moesif", "segment"],
            "handler": f"{_LINEAGE}.sanitize_uri",
            "to_openlineage_converter": f"{_LINEAGE}.to_openlineage",
        }],
        "connection-types": [
            {
                "hook-class-name": f"{_HOOKS}.MoesifHook",
                "hook-name": "Moesif",
                "connection-type": "moesif",
                "conn-fields": {
                    "page_size": {
                        "label": "Page size",
                        "description": "Records per search page (1 to 10000); empty means "
                                       "MOESIF_SEGMENT_PAGE_SIZE (1000).",
                        "schema": {"type": ["integer", "null"], "minimum": 1,
                                   "maximum": 10000},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Management API URL",
                                   "password": "Management API key"},
                    "placeholders": {"host": "https://api.moesif.com",
                                     "password": "a key with read:users and read:companies"},
                },
            },
            {
                "hook-class-name": f"{_HOOKS}.SegmentHook",
                "hook-name": "Segment",
                "connection-type": "segment",
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "The workspace's region: US (api.segment.io) or EU "
                                       "(events.eu1.segmentapis.com). A write key sent to the "
                                       "other region's host is refused.",
                        "schema": {"type": ["string", "null"], "enum": ["US", "EU"],
                                   "default": "US"},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Segment host (overrides the region)",
                                   "password": "Write key"},
                    "placeholders": {"host": "empty: the region's host",
                                     "password": "the source's write key"},
                },
            },
        ],
    }
