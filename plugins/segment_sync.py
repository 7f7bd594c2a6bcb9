"""The run-history plugin, for an Airflow that has the package on PYTHONPATH but not
installed (the Docker image's layout before it installs it, or a copied-in package).

Installed with pip, the package registers the plugin itself through its ``airflow.plugins``
entry point; this file then defines nothing, so Airflow does not load it twice.
"""

from importlib.metadata import entry_points

if not any(point.value.startswith("moesif_segment_sync.")
           for point in entry_points(group="airflow.plugins")):
    from moesif_segment_sync.airflow.plugin import SegmentSyncPlugin  # noqa: F401
